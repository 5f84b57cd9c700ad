package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// MinScrapeTokenLen is the shortest scrape token accepted: it is a
// password a monitoring system keeps, and nothing limits guesses at it but
// its length.
const MinScrapeTokenLen = 32

// maxScrapeTokenFile bounds what LoadScrapeToken reads.
const maxScrapeTokenFile = 4 << 10

// ScrapeToken is a credential for a metrics scraper (pilot
// --metrics-token-file): it opens /metrics and nothing else, and belongs to
// no user or tenant. Only its SHA-256 is kept.
type ScrapeToken struct {
	sum [sha256.Size]byte
}

// LoadScrapeToken reads a scrape token from path: one line of at least
// MinScrapeTokenLen characters, in a regular file only its owner may read
// or write (a token others can read is no credential).
func LoadScrapeToken(path string) (*ScrapeToken, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metrics token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("metrics token file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("metrics token file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("metrics token file %s: mode %04o lets other users read or change it; chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxScrapeTokenFile+1))
	if err != nil {
		return nil, fmt.Errorf("metrics token file %s: %w", path, err)
	}
	if len(b) > maxScrapeTokenFile {
		return nil, fmt.Errorf("metrics token file %s: over %d bytes; it holds one token", path, maxScrapeTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinScrapeTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("metrics token file %s: want one token of at least %d characters without spaces (e.g. openssl rand -hex 32)", path, MinScrapeTokenLen)
	}
	return &ScrapeToken{sum: sha256.Sum256([]byte(tok))}, nil
}

// matches reports whether r carries the token as "Authorization: Bearer".
// Hashes are compared, in constant time, so neither the token's bytes nor
// its length show in the timing.
func (t *ScrapeToken) matches(r *http.Request) bool {
	if t == nil {
		return false
	}
	tok, ok := parseBearer(r.Header.Get("Authorization"))
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// Or serves a request carrying the scrape token with next and hands any
// other to otherwise (a user check). A nil ScrapeToken matches nothing.
func (t *ScrapeToken) Or(next, otherwise http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.matches(r) {
			next.ServeHTTP(w, r)
			return
		}
		otherwise.ServeHTTP(w, r)
	})
}
