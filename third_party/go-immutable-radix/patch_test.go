package iradix

import (
	"fmt"
	"math/rand"
	"testing"
	"unsafe"
)

// untrackedWatch is why upstream tests of watches are skipped or gone:
// in annuaire's copy nodes and leaves have no watch channel, and every
// watch is nil (see ANNUAIRE.md).
const untrackedWatch = "annuaire's patch: nodes and leaves have no watch channel"

// TestNodeSizes is the fourth and sixth patches: without watch channels,
// with prefixes and edges held as pointers and 16-bit lengths and a leaf
// without its key, a node fits the allocator's 32-byte class and a leaf
// its 16-byte one (64 and 48 upstream), and every watch is nil, tracked
// transaction or not, while the tree reads as before.
func TestNodeSizes(t *testing.T) {
	if s := unsafe.Sizeof(Node{}); s != 32 {
		t.Errorf("a node is %d bytes, want 32", s)
	}
	if s := unsafe.Sizeof(leafNode{}); s != 16 {
		t.Errorf("a leaf is %d bytes, want 16", s)
	}
	r := New()
	for _, k := range []string{"foo/bar", "foo/baz", "zip"} {
		r, _, _ = r.Insert([]byte(k), k)
	}
	txn := r.Txn()
	txn.TrackMutate(true)
	txn.Insert([]byte("foo/qux"), "qux")
	r = txn.Commit()
	if ch, v, ok := r.Root().GetWatch([]byte("foo/qux")); ch != nil || !ok || v != "qux" {
		t.Fatalf("GetWatch(foo/qux) = %v, %v, %v; want nil, qux, true", ch, v, ok)
	}
	if ch := r.Root().Iterator().SeekPrefixWatch([]byte("foo/")); ch != nil {
		t.Fatal("SeekPrefixWatch returned a channel")
	}
	k, v, ok := r.Root().Minimum()
	if !ok || string(k) != "foo/bar" || v != "foo/bar" {
		t.Fatalf("Minimum() = %q, %v, %v", k, v, ok)
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
		checkShape(t, v.tree.Root(), "")
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
		if len(n.edges()) != cap(n.edges()) {
			t.Errorf("node %q: %d edges in room for %d", n.prefix(), len(n.edges()), cap(n.edges()))
		}
		for _, e := range n.edges() {
			walk(e)
		}
	}
	walk(tree.Root())
	if tree.Len() != 2500 {
		t.Fatalf("%d keys, want 2500", tree.Len())
	}
}

// checkShape checks what annuaire's copy takes for granted of every node
// under n, reached by path: its key (the bytes before its prefix, which
// it does not hold) is path and its prefix, every child's prefix is
// non-empty, as its first byte is the child's label, and the labels are
// in order, once each; and that a committed leaf without edges holds its
// value in its node, without a leafNode.
func checkShape(t *testing.T, n *Node, path string) {
	t.Helper()
	path += n.prefix()
	if string(n.key()) != path || int(n.depth)+int(n.prefixLen) != len(path) {
		t.Fatalf("node at %q: key %q, depth %d", path, n.key(), n.depth)
	}
	if n.isLeaf() && len(n.edges()) == 0 && n.edgeCap&inline == 0 {
		t.Fatalf("node at %q: a leaf without edges, with a leafNode", path)
	}
	for i, c := range n.edges() {
		if c.prefix() == "" {
			t.Fatalf("node at %q: child %d has an empty prefix", path, i)
		}
		if i > 0 && n.edges()[i-1].label() >= c.label() {
			t.Fatalf("node at %q: labels %q then %q", path, n.edges()[i-1].label(), c.label())
		}
		checkShape(t, c, path)
	}
}
