package iradix

import (
	"sort"
	"strings"
	"unsafe"
)

// WalkFn is used when walking the tree. Takes a
// key and value, returning if iteration should
// be terminated.
type WalkFn func(k []byte, v interface{}) bool

// leafNode is used to represent a value
//
// annuaire: no watch channel, and no key: the key is the bytes its node's
// prefix ends (Node.key), so that a leaf is 16 bytes, not 48; and only a
// node with edges has one, another holds its value itself (see Node and
// ANNUAIRE.md). A leafNode is never changed once made: copies of a node
// share it.
type leafNode struct {
	val interface{}
}

// Node is an immutable node in the radix tree
//
// annuaire: no watch channel, the prefix and the edges held as a pointer
// and a length each (a capacity too for the edges), and the value of a
// node without edges held in the node, so that a node is 32 bytes, not
// 64, and most leaves take no allocation of their own (see ANNUAIRE.md).
// prefix, edges, val and their setters are the only ways to them.
//
// A node's prefix is always a view of the bytes of a key given to Insert,
// at its place in that key: the depth bytes before it are the prefixes of
// the node's ancestors. So the key of a node's leaf is the bytes from
// depth before the prefix to its end (key), and a leaf need not hold it.
type Node struct {
	// Without the inline bit in edgeCap: w0 is the node's *leafNode (nil
	// for none) and w1 the first of its edges, edgeLen children ordered by
	// their label (the first byte of their prefix) in an array of edgeCap.
	// With it, the node has no edges and w0 and w1 are the two words of
	// its value, an interface (eface; sync/atomic.Value keeps one so too).
	w0, w1 unsafe.Pointer

	// The prefix is the common prefix we ignore: prefixLen bytes at
	// prefixData, within a key given to Insert (keyString).
	prefixData *byte

	// prefixLen and depth are at most maxKeyLen: the key ends at
	// depth+prefixLen.
	prefixLen, depth uint16
	edgeLen, edgeCap uint16 // at most 256 edges, one per byte value; edgeCap also holds inline
}

// inline, in Node.edgeCap, says that the node holds its leaf's value.
const inline = 1 << 15

// maxKeyLen is the longest key this copy of the tree holds (Insert panics
// beyond it): lengths within a key are 16 bits, so that a node is 32
// bytes. annuaire's keys are names and labels, at most a few hundred.
const maxKeyLen = 1<<16 - 1

// newNode makes a node without edges or leaf whose prefix, at depth in
// its key, is a view of that key's bytes (keyString).
func newNode(prefix string, depth int) *Node {
	n := &Node{depth: uint16(depth)}
	n.setPrefix(prefix)
	return n
}

// prefix is the part of the key this node consumes.
func (n *Node) prefix() string { return unsafe.String(n.prefixData, n.prefixLen) }

// setPrefix makes p the node's prefix, at the same depth; p must be a view
// of a key's bytes at that depth, as every prefix is (see Node).
func (n *Node) setPrefix(p string) {
	n.prefixData, n.prefixLen = unsafe.StringData(p), uint16(len(p))
}

// key is the key that leads to n: the depth bytes before its prefix, and
// the prefix (see Node).
func (n *Node) key() []byte {
	if n.depth == 0 {
		return keyBytes(n.prefix())
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(n.prefixData), -int(n.depth))), int(n.depth)+int(n.prefixLen))
}

// edges are n's children in order, in an array they may be appended to
// up to its capacity (addEdge, in a node the transaction may write).
func (n *Node) edges() edges {
	if n.edgeCap&inline != 0 {
		return nil
	}
	return unsafe.Slice((**Node)(n.w1), n.edgeCap)[:n.edgeLen]
}

// setEdges gives n the edges e. Without any (nor room for any) its
// leaf's value, if it has one, moves into the node; with some, out of it.
func (n *Node) setEdges(e edges) {
	if cap(e) == 0 {
		if l := n.leafNode(); l != nil {
			n.w0, n.w1, n.edgeLen, n.edgeCap = nil, nil, 0, inline
			*n.eface() = l.val
		} else if n.edgeCap&inline == 0 {
			n.w1, n.edgeLen, n.edgeCap = nil, 0, 0
		}
		return
	}
	if n.edgeCap&inline != 0 {
		l := &leafNode{val: *n.eface()}
		n.w0, n.edgeCap = unsafe.Pointer(l), 0
	}
	n.w1, n.edgeLen, n.edgeCap = unsafe.Pointer(unsafe.SliceData(e)), uint16(len(e)), uint16(cap(e))
}

// eface is the node's two words as the interface they hold with inline.
func (n *Node) eface() *interface{} { return (*interface{})(unsafe.Pointer(&n.w0)) }

// leafNode is n's *leafNode, nil if it has none or holds its value.
func (n *Node) leafNode() *leafNode {
	if n.edgeCap&inline != 0 {
		return nil
	}
	return (*leafNode)(n.w0)
}

// val is the value of n's leaf, which n must have (isLeaf).
func (n *Node) val() interface{} {
	if n.edgeCap&inline != 0 {
		return *n.eface()
	}
	return (*leafNode)(n.w0).val
}

// setLeaf gives n a leaf of value v: in the node if it has no edges.
func (n *Node) setLeaf(v interface{}) {
	if n.edgeCap&inline != 0 || n.edgeCap == 0 {
		n.w0, n.w1, n.edgeLen, n.edgeCap = nil, nil, 0, inline
		*n.eface() = v
		return
	}
	n.w0 = unsafe.Pointer(&leafNode{val: v})
}

// dropLeaf takes n's leaf away.
func (n *Node) dropLeaf() {
	if n.edgeCap&inline != 0 {
		n.w0, n.w1, n.edgeCap = nil, nil, 0
		return
	}
	n.w0 = nil
}

// keyString holds the bytes of a key, or of a prefix within it, as a
// string without copying them: the tree never writes a key's bytes, and
// took them from its caller without a copy upstream too (leaf.key was the
// slice given to Insert, a node's prefix a slice of it), so they were
// already the caller's not to change. A node holds the view as a pointer
// and a 16-bit length (Node.prefix).
func keyString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// keyBytes is the inverse of keyString, for the []byte this package's
// API hands out and for the bytes package: the caller must not write to
// them, as upstream's callers must not write to the keys it returns.
func keyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (n *Node) isLeaf() bool {
	return n.edgeCap&inline != 0 || n.w0 != nil
}

// addEdge adds child, whose label is its prefix's first byte, in order.
func (n *Node) addEdge(child *Node) {
	idx := n.edgeIndex(child.label())
	es := append(n.edges(), child)
	copy(es[idx+1:], es[idx:])
	es[idx] = child
	n.setEdges(es)
}

// trimEdges drops the room beyond n's edges (annuaire's patch).
func (n *Node) trimEdges() {
	if es := n.edges(); cap(es) > len(es) {
		trimmed := make(edges, len(es))
		copy(trimmed, es)
		n.setEdges(trimmed)
	}
}

// label is the byte that leads to n from its parent: a child's prefix is
// never empty (annuaire's patch: an edge is the child alone, 8 bytes, not
// a label and a pointer padded to 16; see ANNUAIRE.md).
func (n *Node) label() byte { return n.prefix()[0] }

// edgeIndex is where label's edge is, or would be, in n's edges.
func (n *Node) edgeIndex(label byte) int {
	es := n.edges()
	return sort.Search(len(es), func(i int) bool {
		return es[i].label() >= label
	})
}

// replaceEdge puts child in place of the edge with its label.
func (n *Node) replaceEdge(child *Node) {
	label := child.label()
	idx := n.edgeIndex(label)
	if idx < len(n.edges()) && n.edges()[idx].label() == label {
		n.edges()[idx] = child
		return
	}
	panic("replacing missing edge")
}

func (n *Node) getEdge(label byte) (int, *Node) {
	idx := n.edgeIndex(label)
	if idx < len(n.edges()) && n.edges()[idx].label() == label {
		return idx, n.edges()[idx]
	}
	return -1, nil
}

func (n *Node) getLowerBoundEdge(label byte) (int, *Node) {
	idx := n.edgeIndex(label)
	// we want lower bound behavior so return even if it's not an exact match
	if idx < len(n.edges()) {
		return idx, n.edges()[idx]
	}
	return -1, nil
}

func (n *Node) delEdge(label byte) {
	idx, es := n.edgeIndex(label), n.edges()
	if idx < len(es) && es[idx].label() == label {
		copy(es[idx:], es[idx+1:])
		es[len(es)-1] = nil
		n.setEdges(es[:len(es)-1])
	}
}

func (n *Node) GetWatch(k []byte) (<-chan struct{}, interface{}, bool) {
	// annuaire: no node has a watch channel; the watch returned is nil,
	// which never fires.
	search := k
	for {
		// Check for key exhaustion
		if len(search) == 0 {
			if n.isLeaf() {
				return nil, n.val(), true
			}
			break
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			break
		}

		// Consume the search prefix
		if strings.HasPrefix(keyString(search), n.prefix()) {
			search = search[len(n.prefix()):]
		} else {
			break
		}
	}
	return nil, nil, false
}

func (n *Node) Get(k []byte) (interface{}, bool) {
	_, val, ok := n.GetWatch(k)
	return val, ok
}

// LongestPrefix is like Get, but instead of an
// exact match, it will return the longest prefix match.
func (n *Node) LongestPrefix(k []byte) ([]byte, interface{}, bool) {
	var last *Node
	search := k
	for {
		// Look for a leaf node
		if n.isLeaf() {
			last = n
		}

		// Check for key exhaution
		if len(search) == 0 {
			break
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			break
		}

		// Consume the search prefix
		if strings.HasPrefix(keyString(search), n.prefix()) {
			search = search[len(n.prefix()):]
		} else {
			break
		}
	}
	if last != nil {
		return last.key(), last.val(), true
	}
	return nil, nil, false
}

// Minimum is used to return the minimum value in the tree
func (n *Node) Minimum() ([]byte, interface{}, bool) {
	for {
		if n.isLeaf() {
			return n.key(), n.val(), true
		}
		if len(n.edges()) > 0 {
			n = n.edges()[0]
		} else {
			break
		}
	}
	return nil, nil, false
}

// Maximum is used to return the maximum value in the tree
func (n *Node) Maximum() ([]byte, interface{}, bool) {
	for {
		if num := len(n.edges()); num > 0 {
			n = n.edges()[num-1]
			continue
		}
		if n.isLeaf() {
			return n.key(), n.val(), true
		} else {
			break
		}
	}
	return nil, nil, false
}

// Iterator is used to return an iterator at
// the given node to walk the tree
func (n *Node) Iterator() *Iterator {
	return &Iterator{node: n}
}

// ReverseIterator is used to return an iterator at
// the given node to walk the tree backwards
func (n *Node) ReverseIterator() *ReverseIterator {
	return NewReverseIterator(n)
}

// Walk is used to walk the tree
func (n *Node) Walk(fn WalkFn) {
	recursiveWalk(n, fn)
}

// WalkBackwards is used to walk the tree in reverse order
func (n *Node) WalkBackwards(fn WalkFn) {
	reverseRecursiveWalk(n, fn)
}

// WalkPrefix is used to walk the tree under a prefix
func (n *Node) WalkPrefix(prefix []byte, fn WalkFn) {
	search := prefix
	for {
		// Check for key exhaution
		if len(search) == 0 {
			recursiveWalk(n, fn)
			return
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			break
		}

		// Consume the search prefix
		if strings.HasPrefix(keyString(search), n.prefix()) {
			search = search[len(n.prefix()):]

		} else if strings.HasPrefix(n.prefix(), keyString(search)) {
			// Child may be under our search prefix
			recursiveWalk(n, fn)
			return
		} else {
			break
		}
	}
}

// WalkPath is used to walk the tree, but only visiting nodes
// from the root down to a given leaf. Where WalkPrefix walks
// all the entries *under* the given prefix, this walks the
// entries *above* the given prefix.
func (n *Node) WalkPath(path []byte, fn WalkFn) {
	search := path
	for {
		// Visit the leaf values if any
		if n.isLeaf() && fn(n.key(), n.val()) {
			return
		}

		// Check for key exhaution
		if len(search) == 0 {
			return
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			return
		}

		// Consume the search prefix
		if strings.HasPrefix(keyString(search), n.prefix()) {
			search = search[len(n.prefix()):]
		} else {
			break
		}
	}
}

// recursiveWalk is used to do a pre-order walk of a node
// recursively. Returns true if the walk should be aborted
func recursiveWalk(n *Node, fn WalkFn) bool {
	// Visit the leaf values if any
	if n.isLeaf() && fn(n.key(), n.val()) {
		return true
	}

	// Recurse on the children
	for _, e := range n.edges() {
		if recursiveWalk(e, fn) {
			return true
		}
	}
	return false
}

// reverseRecursiveWalk is used to do a reverse pre-order
// walk of a node recursively. Returns true if the walk
// should be aborted
func reverseRecursiveWalk(n *Node, fn WalkFn) bool {
	// Visit the leaf values if any
	if n.isLeaf() && fn(n.key(), n.val()) {
		return true
	}

	// Recurse on the children in reverse order
	for i := len(n.edges()) - 1; i >= 0; i-- {
		e := n.edges()[i]
		if reverseRecursiveWalk(e, fn) {
			return true
		}
	}
	return false
}
