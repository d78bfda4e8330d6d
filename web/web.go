// Package web is the dashboard: a single-page application embedded in the
// binary with go:embed and served by every node at / on the HTTP port.
//
// The page has no build step. Its own files (assets/) are plain ES modules
// that render with Preact and htm and draw charts with uPlot, all vendored
// verbatim under vendor/ (see vendor/VENDOR.md for versions, checksums and
// licences). Everything the page shows comes from the node's /v1 REST API
// and the Server-Sent Events of GET /v1/events; nothing is fetched from
// another origin, and the Content-Security-Policy forbids it.
//
// Handler serves the page at / and its files under /ui/ (and the icon at
// /favicon.ico): each response carries a strong ETag (a conditional
// request gets 304), is gzipped when the client accepts it (compressed
// once, when the handler is built), and is sent with a strict
// Content-Security-Policy and the usual hardening headers. The files hold no data, so they need no token; the page asks
// for the API token when the API answers 401 and sends it with every /v1
// request.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// files are the page's own files and the vendored libraries.
//
//go:embed assets vendor
var files embed.FS

// Prefix is the URL path under which the page's files are served; the
// page itself is at /.
const Prefix = "/ui/"

// ContentSecurityPolicy allows scripts, styles, images and connections to
// this origin only; no inline script, no frames, no plugins. uPlot and
// Preact set styles through the CSSOM (element.style), which style-src
// does not restrict.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// mimeTypes are the file types served; other files (licences, notes) are
// embedded for the record but not served.
var mimeTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// asset is one file ready to serve.
type asset struct {
	ctype    string
	body     []byte
	gz       []byte // nil when compression does not pay
	etag     string // of body
	etagGzip string // of gz
}

// Handler serves the dashboard. It is immutable once built and safe for
// concurrent use.
type Handler struct {
	assets map[string]*asset // by URL path: "/" and "/ui/..."
}

// New builds the handler from the embedded files.
func New() (*Handler, error) {
	h := &Handler{assets: map[string]*asset{}}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := mimeTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := files.ReadFile(p)
		if err != nil {
			return fmt.Errorf("web: reading %s: %w", p, err)
		}
		a, err := newAsset(ctype, body)
		if err != nil {
			return fmt.Errorf("web: compressing %s: %w", p, err)
		}
		h.assets[Prefix+p] = a
		return nil
	})
	if err != nil {
		return nil, err
	}
	index, ok := h.assets[Prefix+"assets/index.html"]
	if !ok {
		return nil, fmt.Errorf("web: assets/index.html is not embedded")
	}
	h.assets["/"] = index
	// Browsers ask for /favicon.ico on pages without an icon link (the
	// JSON of /v1 opened in a tab).
	if icon, ok := h.assets[Prefix+"assets/icon.svg"]; ok {
		h.assets["/favicon.ico"] = icon
	}
	return h, nil
}

func newAsset(ctype string, body []byte) (*asset, error) {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	a := &asset{ctype: ctype, body: body, etag: `"` + tag + `"`, etagGzip: `"` + tag + `-gz"`}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() < len(body)*9/10 {
		a.gz = buf.Bytes()
	}
	return a, nil
}

// Paths lists the URL paths the handler serves (tests check that every
// file the page references is among them).
func (h *Handler) Paths() []string {
	out := make([]string, 0, len(h.assets))
	for p := range h.assets {
		out = append(out, p)
	}
	return out
}

// ServeHTTP serves GET and HEAD of /, /favicon.ico and the files under /ui/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	a, ok := h.assets[r.URL.Path]
	if !ok {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Revalidate every time: a new binary may ship new files under the
	// same names, and a 304 costs one small round trip on loopback or LAN.
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Vary", "Accept-Encoding")
	hdr.Set("Content-Type", a.ctype)
	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r) {
		body, etag = a.gz, a.etagGzip
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, a) {
		hdr.Del("Content-Encoding")
		hdr.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// acceptsGzip reports whether Accept-Encoding lists gzip without q=0.
func acceptsGzip(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") || strings.TrimSpace(name) == "*" {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// etagMatches reports whether an If-None-Match list names either of the
// asset's representations (weak comparison, as RFC 9110 asks for it).
func etagMatches(inm string, a *asset) bool {
	for tag := range strings.SplitSeq(inm, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == a.etag || tag == a.etagGzip {
			return true
		}
	}
	return false
}
