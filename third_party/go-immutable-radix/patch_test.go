package iradix

import (
	"fmt"
	"math/rand"
	"testing"
)

// untrackedWatch is why upstream tests of watches on trees built by
// Tree.Insert are skipped: in annuaire's copy a transaction that does not
// track mutations gives the nodes it makes no channel (see ANNUAIRE.md).
const untrackedWatch = "annuaire's patch: nodes made without TrackMutate have no watch channel"

// TestUntrackedNodesHaveNoChannel is the patch: an untracked transaction
// allocates no channel, and a tracked one over such nodes neither panics
// nor misses the channels it made itself.
func TestUntrackedNodesHaveNoChannel(t *testing.T) {
	for _, slow := range []bool{false, true} {
		r := New()
		for _, k := range []string{"foo/bar", "foo/baz", "zip"} {
			r, _, _ = r.Insert([]byte(k), k)
		}
		if ch, _, _ := r.Root().GetWatch([]byte("foo/bar")); ch != nil {
			t.Fatal("an untracked insert made a watch channel")
		}

		txn := r.Txn()
		txn.TrackMutate(true)
		txn.Insert([]byte("foo/qux"), "qux")
		r = txn.Commit() // closes nothing it did not make
		watch, v, ok := r.Root().GetWatch([]byte("foo/qux"))
		if !ok || v != "qux" || watch == nil {
			t.Fatalf("tracked insert: watch %v, value %v, found %v", watch, v, ok)
		}

		txn = r.Txn()
		txn.TrackMutate(true)
		txn.Delete([]byte("foo/qux"))
		txn.Delete([]byte("foo/bar"))
		if slow {
			txn.trackOverflow = true // the walk of both trees
		}
		r = txn.Commit()
		select {
		case <-watch:
		default:
			t.Fatalf("slow notify %v: the tracked leaf's channel is not closed", slow)
		}
		if _, ok := r.Root().Get([]byte("foo/bar")); ok {
			t.Fatal("foo/bar still there")
		}
	}
}

// TestCommittedTreesNeverChange is the second patch: a copied node shares
// its prefix bytes with the node it copies, and the transaction's set of
// nodes it may write in place is a map that starts again when full. A
// tree once committed must read the same whatever later transactions do:
// random inserts and deletes of keys with long common prefixes (so that
// nodes split and merge), in transactions large enough to restart the
// writable set, every committed tree checked against its model at the end.
func TestCommittedTreesNeverChange(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	key := func() string {
		return fmt.Sprintf("k/%d/%d/%d", rnd.Intn(4), rnd.Intn(40), rnd.Intn(400))
	}
	type version struct {
		tree  *Tree
		model map[string]int
	}
	tree, model := New(), map[string]int{}
	var versions []version
	for round := 0; round < 40; round++ {
		txn := tree.Txn()
		n := 1 + rnd.Intn(3*defaultModifiedCache)
		if round%2 == 0 {
			n = 1 + rnd.Intn(20)
		}
		next := make(map[string]int, len(model))
		for k, v := range model {
			next[k] = v
		}
		for i := 0; i < n; i++ {
			k := key()
			if rnd.Intn(3) == 0 {
				txn.Delete([]byte(k))
				delete(next, k)
			} else {
				txn.Insert([]byte(k), i)
				next[k] = i
			}
		}
		tree, model = txn.Commit(), next
		versions = append(versions, version{tree, model})
	}
	for i, v := range versions {
		if v.tree.Len() != len(v.model) {
			t.Fatalf("version %d: %d keys, want %d", i, v.tree.Len(), len(v.model))
		}
		seen := 0
		v.tree.Root().Walk(func(k []byte, val interface{}) bool {
			if want, ok := v.model[string(k)]; !ok || want != val.(int) {
				t.Fatalf("version %d: %s = %v, want %v (present %v)", i, k, val, want, ok)
			}
			seen++
			return false
		})
		if seen != len(v.model) {
			t.Fatalf("version %d: walked %d keys, want %d", i, seen, len(v.model))
		}
		for k, want := range v.model {
			if got, ok := v.tree.Get([]byte(k)); !ok || got.(int) != want {
				t.Fatalf("version %d: Get(%s) = %v, %v; want %d", i, k, got, ok, want)
			}
		}
	}
}

// TestEdgesWithoutSpareRoom is the third patch: a node keeps no room
// beyond its edges, whether a transaction gave it one edge or many, so
// that a tree written one key per commit (an API registration) holds no
// unused edge slots.
func TestEdgesWithoutSpareRoom(t *testing.T) {
	tree := New()
	for i := 0; i < 2000; i++ {
		tree, _, _ = tree.Insert([]byte(fmt.Sprintf("h-127-1-%d-%d", i/256, i%256)), i)
	}
	txn := tree.Txn()
	for i := 0; i < 500; i++ {
		txn.Insert([]byte(fmt.Sprintf("bulk/%d", i)), i)
	}
	tree = txn.Commit()
	var walk func(n *Node)
	walk = func(n *Node) {
		if len(n.edges) != cap(n.edges) {
			t.Errorf("node %q: %d edges in room for %d", n.prefix, len(n.edges), cap(n.edges))
		}
		for _, e := range n.edges {
			walk(e.node)
		}
	}
	walk(tree.Root())
	if tree.Len() != 2500 {
		t.Fatalf("%d keys, want 2500", tree.Len())
	}
}
