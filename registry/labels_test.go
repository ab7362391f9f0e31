package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestLabelsFollowInstances checks the label index, unique since it
// holds no row ID (instancesTable): after random registrations, label
// moves, case changes and deletes, several to an Update and some Updates
// failed, every instance is found by its label and the index holds one
// entry per instance, also after a restart (the journal replayed).
func TestLabelsFollowInstances(t *testing.T) {
	labels := []string{"a", "A", "b", "B", "c", "Imprimante 2"}
	check := func(snap *Snapshot, when string) {
		t.Helper()
		n := 0
		for inst := range snap.All() {
			n++
			got, ok := snap.ByLabel(inst.Proto, inst.Service, strings.ToUpper(inst.Label))
			if !ok || got.ID != inst.ID {
				t.Fatalf("%s: ByLabel(%s) = %v, %v; want %s", when, inst.Label, got, ok, inst.ID)
			}
		}
		m := 0
		for _, svc := range []string{"s0", "s1"} {
			for range snap.Instances("tcp", svc) {
				m++
			}
		}
		if m != n {
			t.Fatalf("%s: %d label index entries for %d instances", when, m, n)
		}
	}
	randomUpdates(t, rand.New(rand.NewPCG(3, 4)), 4, check, func(tx *Tx, rnd *rand.Rand) error {
		if rnd.IntN(4) == 0 {
			if err := tx.DeleteInstance(fmt.Sprintf("i%d", rnd.IntN(6))); !errors.Is(err, ErrNotFound) {
				return err
			}
			return nil
		}
		_, err := tx.PutInstance(Instance{ID: fmt.Sprintf("i%d", rnd.IntN(6)), Service: fmt.Sprintf("s%d", rnd.IntN(2)),
			Label: labels[rnd.IntN(len(labels))], Host: "h", Port: 7})
		return err
	})
}

// TestReplayRefusesTakenLabel: a journal's row that gives an instance a
// label another holds is refused as PutInstance refuses it, not left to
// take the other's entry in the unique label index.
func TestReplayRefusesTakenLabel(t *testing.T) {
	r := New(1)
	_, err := r.Update(func(tx *Tx) error {
		if err := tx.replay(Change{Row: &Instance{ID: "one", Service: "echo", Proto: "tcp", Label: "box", Host: "h", Port: 7, Health: Passing}}); err != nil {
			return err
		}
		return tx.replay(Change{Row: &Instance{ID: "two", Service: "echo", Proto: "tcp", Label: "Box", Host: "h", Port: 8, Health: Passing}})
	})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "already used by one") {
		t.Fatalf("replay of a second instance labelled Box: %v, want a label already used by one", err)
	}
}
