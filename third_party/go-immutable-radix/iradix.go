package iradix

import (
	"strings"
	"unsafe"
)

const (
	// defaultModifiedCache is the default size of the modified node
	// cache used per transaction. This is used to cache the updates
	// to the nodes near the root, while the leaves do not need to be
	// cached. This is important for very large transactions to prevent
	// the modified cache from growing to be enormous. This is also used
	// to set the max size of the mutation notify maps since those should
	// also be bounded in a similar way.
	defaultModifiedCache = 8192
)

// Tree implements an immutable radix tree. This can be treated as a
// Dictionary abstract data type. The main advantage over a standard
// hash map is prefix-based lookups and ordered iteration. The immutability
// means that it is safe to concurrently read from a Tree without any
// coordination.
type Tree struct {
	root *Node
	size int
}

// New returns an empty Tree
func New() *Tree {
	return &Tree{root: &Node{}}
}

// Len is used to return the number of elements in the tree
func (t *Tree) Len() int {
	return t.size
}

// Txn is a transaction on the tree. This transaction is applied
// atomically and returns a new tree when committed. A transaction
// is not thread safe, and should only be used by a single goroutine.
type Txn struct {
	// root is the modified root for the transaction.
	root *Node

	// size tracks the size of the tree as it is modified during the
	// transaction.
	size int

	// writable is a cache of writable nodes that have been created during
	// the course of the transaction. This allows us to re-use the same
	// nodes for further writes and avoid unnecessary copies of nodes that
	// have never been exposed outside the transaction. This will only hold
	// up to defaultModifiedCache number of entries.
	//
	// annuaire: a set that starts again when full, not upstream's LRU,
	// whose list element and entry per node were a quarter of what a
	// one-registration commit allocated (26,288 → 20,233 B and 513 → 379
	// allocations per API registration): garbage of the size classes the
	// tree's live nodes use, the holes that kept the heap's spans at 1.9×
	// its live bytes (see ANNUAIRE.md). Starting again only costs a large
	// transaction a second copy of the few nodes near the root.
	writable map[*Node]struct{}
	// recent holds the first nodes a transaction writes, before they go to
	// writable: a commit of one registration writes a handful per index,
	// and the map's growth was a tenth of what such a commit allocated
	// (18,270 → 17,421 B per API registration, with a registry change).
	recent []*Node
}

// Txn starts a new transaction that can be used to mutate the tree
func (t *Tree) Txn() *Txn {
	txn := &Txn{
		root: t.root,
		size: t.size,
	}
	return txn
}

// Clone makes an independent copy of the transaction. The new transaction
// does not track any nodes and has TrackMutate turned off. The cloned transaction will contain any uncommitted writes in the original transaction but further mutations to either will be independent and result in different radix trees on Commit. A cloned transaction may be passed to another goroutine and mutated there independently however each transaction may only be mutated in a single thread.
func (t *Txn) Clone() *Txn {
	// reset the writable node cache to avoid leaking future writes into the clone
	t.writable = nil
	t.recent = nil

	txn := &Txn{
		root: t.root,
		size: t.size,
	}
	return txn
}

// TrackMutate can be used to toggle if mutations are tracked. If this is enabled
// then notifications will be issued for affected internal nodes and leaves when
// the transaction is committed.
//
// annuaire: a no-op. Nodes and leaves have no watch channel in this copy,
// so there is nothing to notify; every watch this package returns is nil,
// a channel that never fires (see ANNUAIRE.md).
func (t *Txn) TrackMutate(track bool) {}

// writeNode returns a node to be modified, if the current node has already been
// modified during the course of the transaction, it is used in-place.
//
// annuaire: room is how many edges the caller is about to add. It
// replaces upstream's forLeafUpdate, which only chose the channels to
// track, and this copy has none. A copy is made with exactly
// that room: a one-key commit adds one edge to a node it copies, and an
// edge array copied with no room grew by append (to twice its size) and
// was trimmed to size again at the commit (trimWritable), two arrays of
// garbage per such node. A node already writable keeps append's growth,
// which a large transaction's many edges need.
func (t *Txn) writeNode(n *Node, room int) *Node {
	// If this node has already been modified, we can continue to use it
	// during this transaction.
	if t.isWritable(n) {
		return n
	}

	// Copy the existing node.
	//
	// annuaire: the copy shares its prefix bytes, which no node ever writes
	// in place (a split reslices them, a merge takes a longer view): one
	// small allocation less per copied node (TestCommittedTreesNeverChange).
	// It shares the leafNode too, which nothing changes, or copies the value
	// a node without edges holds.
	nc := &Node{w0: n.w0, prefixData: n.prefixData, prefixLen: n.prefixLen, depth: n.depth}
	if n.edgeCap&inline != 0 {
		nc.w1, nc.edgeCap = n.w1, inline
	}
	if es := n.edges(); len(es)+room != 0 {
		e := make(edges, len(es), len(es)+room)
		copy(e, es)
		nc.setEdges(e)
	}

	// Mark this node as writable.
	t.markWritable(nc)
	return nc
}

// recentNodes is how many nodes a transaction keeps in Txn.recent, looked
// up by a scan, before it makes the writable map.
const recentNodes = 32

func (t *Txn) isWritable(n *Node) bool {
	if t.writable != nil {
		_, ok := t.writable[n]
		return ok
	}
	for _, w := range t.recent {
		if w == n {
			return true
		}
	}
	return false
}

func (t *Txn) markWritable(n *Node) {
	switch {
	case t.writable == nil && len(t.recent) < recentNodes:
		if t.recent == nil {
			t.recent = make([]*Node, 0, 8)
		}
		t.recent = append(t.recent, n)
		return
	case t.writable == nil:
		t.writable = make(map[*Node]struct{}, 2*recentNodes)
		for _, w := range t.recent {
			t.writable[w] = struct{}{}
		}
		t.recent = nil
	case len(t.writable) >= defaultModifiedCache:
		t.trimWritable()
		t.writable = make(map[*Node]struct{})
	}
	t.writable[n] = struct{}{}
}

// countLeaves returns the number of leaves under n, n's own included.
func countLeaves(n *Node) int {
	leaves := 0
	if n.isLeaf() {
		leaves = 1
	}
	for _, e := range n.edges() {
		leaves += countLeaves(e)
	}
	return leaves
}

// mergeChild is called to collapse the given node with its child. This is only
// called when the given node is not a leaf and has a single edge.
func (t *Txn) mergeChild(n *Node) {
	child := n.edges()[0]

	// Merge the nodes.
	//
	// annuaire: the merged prefix is the view of the child's key that ends
	// with the child's prefix and starts len(n's prefix) bytes before it,
	// where n's prefix bytes are (see Node): no concatenation, and the
	// node's leaf still finds its key before its prefix.
	start := unsafe.Add(unsafe.Pointer(child.prefixData), -int(n.prefixLen))
	n.setPrefix(unsafe.String((*byte)(start), int(n.prefixLen)+int(child.prefixLen)))
	n.dropLeaf()
	n.setEdges(nil)
	if ce := child.edges(); len(ce) != 0 {
		e := make(edges, len(ce))
		copy(e, ce)
		n.setEdges(e)
	}
	if l := child.leafNode(); l != nil {
		n.w0 = unsafe.Pointer(l) // n has child's edges: no value in the node
	} else if child.isLeaf() {
		n.setLeaf(child.val())
	}
}

// insert does a recursive insertion
func (t *Txn) insert(n *Node, k, search []byte, v interface{}) (*Node, interface{}, bool) {
	// Handle key exhaustion
	if len(search) == 0 {
		var oldVal interface{}
		didUpdate := false
		if n.isLeaf() {
			oldVal = n.val()
			didUpdate = true
		}

		nc := t.writeNode(n, 0)
		nc.setLeaf(v)
		return nc, oldVal, didUpdate
	}

	// Look for the edge
	idx, child := n.getEdge(search[0])

	// No edge, create one
	if child == nil {
		e := newNode(keyString(search), len(k)-len(search))
		e.setLeaf(v)
		nc := t.writeNode(n, 1)
		nc.addEdge(e)
		return nc, nil, false
	}

	// Determine longest prefix of the search key on match
	commonPrefix := longestPrefix(search, keyBytes(child.prefix()))
	if commonPrefix == len(child.prefix()) {
		search = search[commonPrefix:]
		newChild, oldVal, didUpdate := t.insert(child, k, search, v)
		if newChild != nil {
			nc := t.writeNode(n, 0)
			nc.edges()[idx] = newChild
			return nc, oldVal, didUpdate
		}
		return nil, oldVal, didUpdate
	}

	// Split the node
	nc := t.writeNode(n, 0)
	// annuaire: the split node gets its edges' room at once, the
	// existing child's and, unless the new key ends here, the new leaf's.
	room := 1
	if len(search) > commonPrefix {
		room = 2
	}
	splitNode := newNode(keyString(search[:commonPrefix]), len(k)-len(search))
	splitNode.setEdges(make(edges, 0, room))
	nc.replaceEdge(splitNode)

	// Restore the existing child node
	modChild := t.writeNode(child, 0)
	modChild.setPrefix(modChild.prefix()[commonPrefix:])
	modChild.depth += uint16(commonPrefix)
	splitNode.addEdge(modChild)

	// If the new key is a subset, add to to this node
	search = search[commonPrefix:]
	if len(search) == 0 {
		splitNode.setLeaf(v)
		return nc, nil, false
	}

	// Create a new edge for the node
	leaf := newNode(keyString(search), len(k)-len(search))
	leaf.setLeaf(v)
	splitNode.addEdge(leaf)
	return nc, nil, false
}

// delete does a recursive deletion
//
// annuaire: it returns the deleted leaf's value and whether there was one
// (a node may hold its value: no leafNode to return).
func (t *Txn) delete(parent, n *Node, search []byte) (*Node, interface{}, bool) {
	// Check for key exhaustion
	if len(search) == 0 {
		if !n.isLeaf() {
			return nil, nil, false
		}
		// Copy the value in case we are in a transaction that already
		// modified this node since the node will be reused. Any changes
		// made to the node will not affect returning the original leaf
		// value.
		oldVal := n.val()

		// Remove the leaf node
		nc := t.writeNode(n, 0)
		nc.dropLeaf()

		// Check if this node should be merged
		if n != t.root && len(nc.edges()) == 1 {
			t.mergeChild(nc)
		}
		return nc, oldVal, true
	}

	// Look for an edge
	label := search[0]
	idx, child := n.getEdge(label)
	if child == nil || !strings.HasPrefix(keyString(search), child.prefix()) {
		return nil, nil, false
	}

	// Consume the search prefix
	search = search[len(child.prefix()):]
	newChild, oldVal, ok := t.delete(n, child, search)
	if newChild == nil {
		return nil, nil, false
	}

	// Copy this node; it loses an edge, or gains its child's (mergeChild
	// makes them an array of their own).
	nc := t.writeNode(n, 0)

	// Delete the edge if the node has no edges
	if !newChild.isLeaf() && len(newChild.edges()) == 0 {
		nc.delEdge(label)
		if n != t.root && len(nc.edges()) == 1 && !nc.isLeaf() {
			t.mergeChild(nc)
		}
	} else {
		nc.edges()[idx] = newChild
	}
	return nc, oldVal, ok
}

// delete does a recursive deletion
func (t *Txn) deletePrefix(parent, n *Node, search []byte) (*Node, int) {
	// Check for key exhaustion
	if len(search) == 0 {
		nc := t.writeNode(n, 0)
		nc.dropLeaf()
		nc.setEdges(nil)
		return nc, countLeaves(n)
	}

	// Look for an edge
	label := search[0]
	idx, child := n.getEdge(label)
	// We make sure that either the child node's prefix starts with the search term, or the search term starts with the child node's prefix
	// Need to do both so that we can delete prefixes that don't correspond to any node in the tree
	if child == nil || (!strings.HasPrefix(child.prefix(), keyString(search)) && !strings.HasPrefix(keyString(search), child.prefix())) {
		return nil, 0
	}

	// Consume the search prefix
	if len(child.prefix()) > len(search) {
		search = []byte("")
	} else {
		search = search[len(child.prefix()):]
	}
	newChild, numDeletions := t.deletePrefix(n, child, search)
	if newChild == nil {
		return nil, 0
	}
	// Copy this node; it loses an edge, or gains its child's (mergeChild
	// makes them an array of their own).
	nc := t.writeNode(n, 0)

	// Delete the edge if the node has no edges
	if !newChild.isLeaf() && len(newChild.edges()) == 0 {
		nc.delEdge(label)
		if n != t.root && len(nc.edges()) == 1 && !nc.isLeaf() {
			t.mergeChild(nc)
		}
	} else {
		nc.edges()[idx] = newChild
	}
	return nc, numDeletions
}

// Insert is used to add or update a given key. The return provides
// the previous value and a bool indicating if any was set.
//
// annuaire: k is at most maxKeyLen bytes; a longer one panics.
func (t *Txn) Insert(k []byte, v interface{}) (interface{}, bool) {
	if len(k) > maxKeyLen {
		panic("iradix: a key of more than 65,535 bytes")
	}
	newRoot, oldVal, didUpdate := t.insert(t.root, k, k, v)
	if newRoot != nil {
		t.root = newRoot
	}
	if !didUpdate {
		t.size++
	}
	return oldVal, didUpdate
}

// Delete is used to delete a given key. Returns the old value if any,
// and a bool indicating if the key was set.
func (t *Txn) Delete(k []byte) (interface{}, bool) {
	newRoot, old, ok := t.delete(nil, t.root, k)
	if newRoot != nil {
		t.root = newRoot
	}
	if ok {
		t.size--
		return old, true
	}
	return nil, false
}

// DeletePrefix is used to delete an entire subtree that matches the prefix
// This will delete all nodes under that prefix
func (t *Txn) DeletePrefix(prefix []byte) bool {
	newRoot, numDeletions := t.deletePrefix(nil, t.root, prefix)
	if newRoot != nil {
		t.root = newRoot
		t.size = t.size - numDeletions
		return true
	}
	return false

}

// Root returns the current root of the radix tree within this
// transaction. The root is not safe across insert and delete operations,
// but can be used to read the current state during a transaction.
func (t *Txn) Root() *Node {
	return t.root
}

// Get is used to lookup a specific key, returning
// the value and if it was found
func (t *Txn) Get(k []byte) (interface{}, bool) {
	return t.root.Get(k)
}

// GetWatch is used to lookup a specific key, returning
// the watch channel, value and if it was found
func (t *Txn) GetWatch(k []byte) (<-chan struct{}, interface{}, bool) {
	return t.root.GetWatch(k)
}

// Commit is used to finalize the transaction and return a new tree. If mutation
// tracking is turned on then notifications will also be issued.
func (t *Txn) Commit() *Tree {
	return t.CommitOnly()
}

// CommitOnly is used to finalize the transaction and return a new tree, but
// does not issue any notifications until Notify is called.
func (t *Txn) CommitOnly() *Tree {
	nt := &Tree{t.root, t.size}
	t.trimWritable()
	t.writable = nil
	t.recent = nil
	return nt
}

// trimWritable gives the nodes the transaction may still write in place
// exactly their edges (annuaire's patch, see ANNUAIRE.md): addEdge's
// append leaves room for more, and a committed node is copied before it
// is written again, so that room would only be kept, unused, for as long
// as the node lives. Trimming when a node leaves the set, rather than
// growing by one edge at a time, keeps a large transaction's appends
// amortized.
func (t *Txn) trimWritable() {
	for _, n := range t.recent {
		n.trimEdges()
	}
	for n := range t.writable {
		n.trimEdges()
	}
}

// Notify is used along with TrackMutate to trigger notifications. This must
// only be done once a transaction is committed via CommitOnly, and it is called
// automatically by Commit.
//
// annuaire: a no-op, as TrackMutate is: there are no channels to close.
func (t *Txn) Notify() {}

// Insert is used to add or update a given key. The return provides
// the new tree, previous value and a bool indicating if any was set.
func (t *Tree) Insert(k []byte, v interface{}) (*Tree, interface{}, bool) {
	txn := t.Txn()
	old, ok := txn.Insert(k, v)
	return txn.Commit(), old, ok
}

// Delete is used to delete a given key. Returns the new tree,
// old value if any, and a bool indicating if the key was set.
func (t *Tree) Delete(k []byte) (*Tree, interface{}, bool) {
	txn := t.Txn()
	old, ok := txn.Delete(k)
	return txn.Commit(), old, ok
}

// DeletePrefix is used to delete all nodes starting with a given prefix. Returns the new tree,
// and a bool indicating if the prefix matched any nodes
func (t *Tree) DeletePrefix(k []byte) (*Tree, bool) {
	txn := t.Txn()
	ok := txn.DeletePrefix(k)
	return txn.Commit(), ok
}

// Root returns the root node of the tree which can be used for richer
// query operations.
func (t *Tree) Root() *Node {
	return t.root
}

// Get is used to lookup a specific key, returning
// the value and if it was found
func (t *Tree) Get(k []byte) (interface{}, bool) {
	return t.root.Get(k)
}

// longestPrefix finds the length of the shared prefix
// of two strings
func longestPrefix(k1, k2 []byte) int {
	max := len(k1)
	if l := len(k2); l < max {
		max = l
	}
	var i int
	for i = 0; i < max; i++ {
		if k1[i] != k2[i] {
			break
		}
	}
	return i
}
