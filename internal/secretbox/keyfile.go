package secretbox

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvKey is the environment variable that may hold pilot's master key
// (base64 of 32 bytes).
const EnvKey = "HANGAR_SECRET_KEY"

const keyHelp = "generate one with: head -c 32 /dev/urandom | base64"

// decodeKey accepts the base64 text of 32 bytes (what LoadOrCreateKey
// writes), or the 32 bytes themselves.
func decodeKey(b []byte) ([]byte, error) {
	text := bytes.TrimSpace(b)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(text)); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	return nil, fmt.Errorf("must hold %d random bytes as base64 (44 characters) or raw; %s", KeySize, keyHelp)
}

// ReadKeyFile reads a key file that must exist and be readable by its owner
// only.
func ReadKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret key file %s has mode %04o, so other users may read it; it must be readable by its owner only: chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	k, err := decodeKey(b)
	if err != nil {
		return nil, fmt.Errorf("secret key file %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateKey reads the key at path, or when there is none creates it
// (32 random bytes, base64, mode 0600; the folder 0700). Two processes
// racing to create it end up with the same key: the file appears whole and
// only once.
func LoadOrCreateKey(path string) ([]byte, error) {
	k, err := ReadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create secret key: %w", err)
	}
	k = make([]byte, KeySize)
	_, _ = rand.Read(k) // never fails
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("create secret key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	text := base64.StdEncoding.EncodeToString(k) + "\n"
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret key %s: %w", path, err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret key %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret key %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create secret key %s: %w", path, err)
	}
	// A hard link never replaces an existing file, unlike rename: if
	// another process created the key first, its key is the one to use.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ReadKeyFile(path)
		}
		return nil, fmt.Errorf("create secret key %s: %w", path, err)
	}
	return k, nil
}

// KeyFromEnv reads a base64 key from the environment variable name; an
// unset or empty variable gives nil and no error.
func KeyFromEnv(name string) ([]byte, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return nil, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(v); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("environment variable %s: decodes to %d bytes; it must be %d bytes as base64; %s", name, len(k), KeySize, keyHelp)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("environment variable %s: not base64; it must be %d random bytes as base64; %s", name, KeySize, keyHelp)
}

// Source says where LoadMaster found the key.
type Source string

// Key sources, in the order LoadMaster tries them.
const (
	SourceFile      Source = "file"      // the keyFile argument (--secret-key-file)
	SourceEnv       Source = "env"       // HANGAR_SECRET_KEY
	SourceDefault   Source = "default"   // defaultPath, existing
	SourceGenerated Source = "generated" // defaultPath, created now
)

// LoadMaster returns pilot's master Box: from keyFile when set (it must
// exist), else from the HANGAR_SECRET_KEY environment variable when set,
// else from defaultPath (e.g. <pilot data>/secret.key), created on first
// use. Losing a generated key loses every secret sealed with it, so the
// source is returned for pilot to log.
func LoadMaster(keyFile, defaultPath string) (*Box, Source, error) {
	var (
		k   []byte
		src Source
		err error
	)
	switch {
	case keyFile != "":
		k, err = ReadKeyFile(keyFile)
		src = SourceFile
	default:
		if k, err = KeyFromEnv(EnvKey); err != nil || k != nil {
			src = SourceEnv
			break
		}
		if defaultPath == "" {
			return nil, "", fmt.Errorf("secret key: no key file given, %s unset, and no default path", EnvKey)
		}
		_, statErr := os.Stat(defaultPath)
		src = SourceDefault
		if errors.Is(statErr, fs.ErrNotExist) {
			src = SourceGenerated
		}
		k, err = LoadOrCreateKey(defaultPath)
	}
	if err != nil {
		return nil, "", err
	}
	b, err := New(k)
	if err != nil {
		return nil, "", err
	}
	return b, src, nil
}
