package web

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
)

func newHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, p string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, p, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// references are the local URLs a page or module names: src and href
// attributes, and the targets of JavaScript imports.
var references = regexp.MustCompile(`(?:src|href)="(/[^"]*)"|from '(\./[^']+)'`)

// TestEveryReferencedAssetIsServed follows the page's references (the
// HTML's scripts and styles, the modules' imports) and requests each one.
func TestEveryReferencedAssetIsServed(t *testing.T) {
	h := newHandler(t)
	seen := map[string]bool{}
	queue := []string{"/"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		w := get(h, p, nil)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d", p, w.Code)
			continue
		}
		for _, m := range references.FindAllStringSubmatch(w.Body.String(), -1) {
			switch {
			case m[1] != "" && !strings.HasPrefix(m[1], "/v1/"):
				queue = append(queue, m[1])
			case m[2] != "":
				queue = append(queue, path.Join(path.Dir(p), m[2]))
			}
		}
	}
	for _, want := range []string{"/ui/assets/js/app.js", "/ui/assets/js/overview.js", "/ui/vendor/uPlot.iife.min.js", "/ui/assets/style.css"} {
		if !seen[want] {
			t.Errorf("%s is not referenced from the page", want)
		}
	}
	// Every served file is used by the page: nothing dead ships.
	for _, p := range h.Paths() {
		if !seen[p] && p != "/favicon.ico" && p != Prefix+"assets/index.html" {
			t.Errorf("%s is served but the page does not reference it", p)
		}
	}
}

func TestHeadersAndMIMETypes(t *testing.T) {
	h := newHandler(t)
	for p, ctype := range map[string]string{
		"/":                            "text/html; charset=utf-8",
		"/ui/assets/js/app.js":         "text/javascript; charset=utf-8",
		"/ui/assets/style.css":         "text/css; charset=utf-8",
		"/ui/vendor/uPlot.min.css":     "text/css; charset=utf-8",
		"/ui/assets/icon.svg":          "image/svg+xml",
		"/favicon.ico":                 "image/svg+xml",
		"/ui/vendor/preact.min.umd.js": "text/javascript; charset=utf-8",
	} {
		w := get(h, p, nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ctype {
			t.Errorf("GET %s: %d %q, want 200 %q", p, w.Code, w.Header().Get("Content-Type"), ctype)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") ||
			strings.Contains(csp, "http") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q allows more than this origin", p, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("ETag") == "" {
			t.Errorf("GET %s: headers %v", p, w.Header())
		}
	}
	for _, p := range []string{"/ui/vendor/VENDOR.md", "/ui/vendor/LICENSE.htm", "/ui/nope.js", "/ui/../web.go"} {
		if w := get(h, p, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
}

func TestGzipAndETags(t *testing.T) {
	h := newHandler(t)
	plain := get(h, "/ui/vendor/uPlot.iife.min.js", nil)
	gz := get(h, "/ui/vendor/uPlot.iife.min.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if gz.Header().Get("Content-Encoding") != "gzip" || gz.Body.Len() >= plain.Body.Len()/2 {
		t.Fatalf("gzip: encoding %q, %d bytes against %d", gz.Header().Get("Content-Encoding"), gz.Body.Len(), plain.Body.Len())
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if string(unzipped) != plain.Body.String() {
		t.Fatal("the gzipped body differs from the plain one")
	}
	if plain.Header().Get("ETag") == gz.Header().Get("ETag") {
		t.Fatal("the two representations share an ETag")
	}
	if no := get(h, "/ui/vendor/uPlot.iife.min.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); no.Header().Get("Content-Encoding") != "" {
		t.Fatal("gzip sent to a client that refuses it")
	}
	for _, tag := range []string{plain.Header().Get("ETag"), gz.Header().Get("ETag"), "W/" + plain.Header().Get("ETag"), `"x", ` + gz.Header().Get("ETag")} {
		w := get(h, "/ui/vendor/uPlot.iife.min.js", map[string]string{"If-None-Match": tag, "Accept-Encoding": "gzip"})
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", tag, w.Code, w.Body.Len())
		}
	}
	if w := get(h, "/", map[string]string{"If-None-Match": `"other"`}); w.Code != http.StatusOK {
		t.Errorf("a stale ETag got %d", w.Code)
	}
	req := httptest.NewRequest(http.MethodHead, "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /: %d, %d bytes, length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	req = httptest.NewRequest(http.MethodPost, "/", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", w.Code)
	}
}

// TestVendoredFilesMatchTheirRecord checks each vendored file against the
// SHA-256 that vendor/VENDOR.md records, and that its licence ships too.
func TestVendoredFilesMatchTheirRecord(t *testing.T) {
	f, err := os.Open("vendor/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile(`^\| (\S+) \| \S+ \| \S+ \| \S+ \| .*\((LICENSE\.\w+)\) \| ([0-9a-f]{64}) \|$`)
	checked := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		b, err := files.ReadFile("vendor/" + m[1])
		if err != nil {
			t.Errorf("%s is recorded but not embedded: %v", m[1], err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != m[3] {
			t.Errorf("%s: sha256 %s, VENDOR.md records %s", m[1], got, m[3])
		}
		if _, err := files.ReadFile("vendor/" + m[2]); err != nil {
			t.Errorf("%s: licence %s missing", m[1], m[2])
		}
		checked++
	}
	entries, _ := files.ReadDir("vendor")
	served := 0
	for _, e := range entries {
		if _, ok := mimeTypes[path.Ext(e.Name())]; ok {
			served++
		}
	}
	if checked == 0 || checked != served {
		t.Fatalf("VENDOR.md records %d files, vendor/ serves %d", checked, served)
	}
}
