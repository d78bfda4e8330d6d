package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// peerTimeout bounds a request passed on to another node.
const peerTimeout = 5 * time.Second

// askPeer passes a GET with ?node=<id> naming another cluster member on to
// that member's HTTP address (with the caller's Authorization header) and
// copies its answer, so that a page talking to any node can show every
// node's figures. done is false when the request is for this node (no
// node parameter, or this node's id): the caller answers it.
func (s *Server) askPeer(w http.ResponseWriter, r *http.Request) (done bool, err error) {
	id := r.URL.Query().Get("node")
	if id == "" || s.opts.Node == nil || id == s.opts.Node.ID() {
		return false, nil
	}
	addr := ""
	for _, m := range s.opts.Node.Members() {
		if m.ID == id {
			addr = m.HTTP
		}
	}
	if addr == "" {
		return true, fmt.Errorf("%w: node %q is not a member of this cluster or serves no HTTP", errNotFound, id)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := r.URL.Query()
	q.Del("node")
	ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+r.URL.Path+"?"+q.Encode(), nil)
	if err != nil {
		return true, fmt.Errorf("asking node %s: %w", id, err)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := s.peers.Do(req)
	if err != nil {
		return true, fmt.Errorf("%w: asking node %s at %s: %w", errNotReady, id, addr, err)
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, s.opts.MaxBodyBytes))
	return true, nil
}
