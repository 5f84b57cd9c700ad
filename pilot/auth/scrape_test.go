package auth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodScrapeToken = "0123456789abcdef0123456789abcdef"

func TestLoadScrapeToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		path string
		want string // in the error; "" loads
	}{
		{"owner only", write("ok", goodScrapeToken+"\n", 0o600), ""},
		{"read-only for its owner", write("ro", goodScrapeToken, 0o400), ""},
		{"group-readable", write("g", goodScrapeToken, 0o640), "mode 0640 lets other users read or change it; chmod 600"},
		{"world-readable", write("o", goodScrapeToken, 0o604), "mode 0604"},
		{"group-writable", write("gw", goodScrapeToken, 0o620), "mode 0620"},
		{"too short", write("short", "hunter2", 0o600), "at least 32 characters"},
		{"two words", write("words", goodScrapeToken+" "+goodScrapeToken, 0o600), "without spaces"},
		{"empty", write("empty", "", 0o600), "at least 32 characters"},
		{"huge", write("huge", strings.Repeat("x", 5000), 0o600), "over 4096 bytes"},
		{"a directory", dir, "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := LoadScrapeToken(tc.path)
			if tc.want == "" {
				if err != nil || tok == nil {
					t.Fatalf("LoadScrapeToken: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadScrapeToken = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestScrapeTokenOr(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(goodScrapeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadScrapeToken(p)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(name)) })
	}
	for _, tc := range []struct {
		name  string
		tok   *ScrapeToken
		auth  string
		serve string
	}{
		{"the token", tok, "Bearer " + goodScrapeToken, "metrics"},
		{"the token, any case of scheme", tok, "bearer " + goodScrapeToken, "metrics"},
		{"another token", tok, "Bearer " + strings.ToUpper(goodScrapeToken), "user check"},
		{"a prefix of it", tok, "Bearer " + goodScrapeToken[:31], "user check"},
		{"another scheme", tok, "Basic " + goodScrapeToken, "user check"},
		{"none", tok, "", "user check"},
		{"no scrape token configured", nil, "Bearer " + goodScrapeToken, "user check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			tc.tok.Or(serve("metrics"), serve("user check")).ServeHTTP(rec, req)
			if rec.Body.String() != tc.serve {
				t.Fatalf("served by %q, want %q", rec.Body.String(), tc.serve)
			}
		})
	}
}
