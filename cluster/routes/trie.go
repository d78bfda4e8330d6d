package routes

import "strings"

// trie indexes the topic filters of the other nodes by level, each filter
// with the set of nodes that hold it, and answers which nodes hold a
// filter matching a topic name (MQTT 5 section 4.7: '+' one level, '#'
// any number including the parent level, wildcards in the first level do
// not match topics starting with '$').
//
// A trie is not safe for concurrent use; the Router guards it.
type trie struct {
	root tnode
}

type tnode struct {
	children map[string]*tnode
	// nodes holds the nodes with a filter ending at this node.
	nodes map[string]struct{}
}

func (n *tnode) empty() bool { return len(n.children) == 0 && len(n.nodes) == 0 }

// add records that node holds filter.
func (t *trie) add(filter, node string) {
	n := &t.root
	for _, l := range strings.Split(filter, "/") {
		c := n.children[l]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*tnode{}
			}
			c = &tnode{}
			n.children[l] = c
		}
		n = c
	}
	if n.nodes == nil {
		n.nodes = map[string]struct{}{}
	}
	n.nodes[node] = struct{}{}
}

// remove forgets that node holds filter, pruning emptied branches.
func (t *trie) remove(filter, node string) {
	levels := strings.Split(filter, "/")
	path := make([]*tnode, 0, len(levels)+1)
	n := &t.root
	path = append(path, n)
	for _, l := range levels {
		if n = n.children[l]; n == nil {
			return
		}
		path = append(path, n)
	}
	delete(n.nodes, node)
	for i := len(levels); i > 0 && path[i].empty(); i-- {
		delete(path[i-1].children, levels[i-1])
	}
}

// match adds to out the nodes holding a filter that matches name.
func (t *trie) match(name string, out map[string]struct{}) {
	levels := strings.Split(name, "/")
	matchLevel(&t.root, levels, 0, len(name) > 0 && name[0] == '$', out)
}

func matchLevel(n *tnode, levels []string, i int, dollar bool, out map[string]struct{}) {
	wild := !(dollar && i == 0) // [MQTT-4.7.2-1]
	if wild {
		if c := n.children["#"]; c != nil {
			addAll(out, c.nodes) // '#' matches this level on, and the parent [MQTT-4.7.1-2]
		}
	}
	if i == len(levels) {
		addAll(out, n.nodes)
		return
	}
	if c := n.children[levels[i]]; c != nil {
		matchLevel(c, levels, i+1, dollar, out)
	}
	if wild {
		if c := n.children["+"]; c != nil {
			matchLevel(c, levels, i+1, dollar, out)
		}
	}
}

func addAll(out, nodes map[string]struct{}) {
	for id := range nodes {
		out[id] = struct{}{}
	}
}
