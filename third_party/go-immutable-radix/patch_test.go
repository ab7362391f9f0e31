package iradix

import "testing"

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
