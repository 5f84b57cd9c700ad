package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/atomicfile"
)

// Keys in pilot's etcd.
const (
	UsersPrefix  = "/hangar/users/"
	TokensPrefix = "/hangar/user-tokens/"
	// bootstrapKey records that the first admin was created, so deleting
	// that user later does not bring it back at the next start.
	bootstrapKey = "/hangar/users-bootstrapped"
)

// TokenPrefix starts every API token, so a leaked one is recognisable (and
// secret scanners can be taught to find it).
const TokenPrefix = "hgt_"

const tokenBytes = 32

// AdminTokenFile is the file, in pilot's data dir, holding the first
// admin's token.
const AdminTokenFile = "admin.token"

// AdminUser is the first user, created by Bootstrap.
const AdminUser = "admin"

var (
	// ErrNotFound: no such user in the tenant.
	ErrNotFound = errors.New("user not found")
	// ErrExists: the tenant already has a user of that name.
	ErrExists = errors.New("user already exists")
	// ErrInvalid wraps every refusal of a bad name, tenant or role.
	ErrInvalid = errors.New("invalid user")
	// ErrBadToken is the one answer to a missing, malformed, unknown or
	// deleted user's token, so a caller learns nothing about which it was.
	ErrBadToken = errors.New(unauthenticatedMsg)
)

var validName = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// ValidateName checks a user or tenant name (what says which) and says
// what is allowed.
func ValidateName(what, s string) error {
	if !validName.MatchString(s) {
		return fmt.Errorf("%w: %s %q: use 1 to 63 lowercase letters, digits, dots, dashes or underscores, starting with a letter", ErrInvalid, what, s)
	}
	return nil
}

// Recorder records a call the interceptors refused to an authenticated
// caller (the audit log implements it). ctx carries the Principal.
type Recorder interface {
	Record(ctx context.Context, method string, req, resp any, err error)
}

// Config configures Users.
type Config struct {
	// Client is pilot's etcd; the caller keeps ownership.
	Client *clientv3.Client
	Logger *slog.Logger
	// Audit, when set, records the mutating calls refused for lack of a
	// role, which never reach the handler (or its audit interceptor).
	Audit Recorder
}

// Users keeps API users and authenticates their tokens.
type Users struct {
	c     *clientv3.Client
	log   *slog.Logger
	audit Recorder
}

// New returns the user store over cfg.Client.
func New(cfg Config) *Users {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Users{c: cfg.Client, log: log, audit: cfg.Audit}
}

// record is a user as stored: the API's User plus the token's hash.
type record struct {
	Name        string    `json:"name"`
	Tenant      string    `json:"tenant"`
	Role        string    `json:"role"`
	CreatedAt   time.Time `json:"created_at"`
	TokenSHA256 string    `json:"token_sha256"`
}

func (r *record) user() *pilotv1.User {
	return &pilotv1.User{Name: r.Name, Tenant: r.Tenant, Role: pilotv1.Role(pilotv1.Role_value[r.Role]), CreatedAt: timestamppb.New(r.CreatedAt)}
}

// UserKey is where a user is stored.
func UserKey(tenant, name string) string { return UsersPrefix + tenant + "/" + name }

func tokenKey(hash string) string { return TokensPrefix + hash }

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh API token.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate API token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// wellFormed rejects what cannot be a token before any etcd read.
func wellFormed(token string) bool {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil && len(b) == tokenBytes
}

func validRole(r pilotv1.Role) error {
	switch r {
	case pilotv1.Role_ROLE_VIEWER, pilotv1.Role_ROLE_MEMBER, pilotv1.Role_ROLE_ADMIN:
		return nil
	}
	return fmt.Errorf("%w: role %s: use admin, member or viewer", ErrInvalid, r)
}

// Create adds a user and returns it with its token, which is never stored
// and cannot be shown again.
func (u *Users) Create(ctx context.Context, tenant, name string, role pilotv1.Role) (*pilotv1.User, string, error) {
	rec, token, err := newRecord(tenant, name, role)
	if err != nil {
		return nil, "", err
	}
	ok, err := u.put(ctx, rec, nil)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", fmt.Errorf("user %s in tenant %s: %w", name, tenant, ErrExists)
	}
	u.log.Info("user created", "user", name, "tenant", tenant, "role", RoleName(role))
	return rec.user(), token, nil
}

func newRecord(tenant, name string, role pilotv1.Role) (*record, string, error) {
	if err := ValidateName("tenant", tenant); err != nil {
		return nil, "", err
	}
	if err := ValidateName("user name", name); err != nil {
		return nil, "", err
	}
	if err := validRole(role); err != nil {
		return nil, "", err
	}
	token, err := NewToken()
	if err != nil {
		return nil, "", err
	}
	rec := &record{Name: name, Tenant: tenant, Role: role.String(), CreatedAt: time.Now().UTC(), TokenSHA256: hashToken(token)}
	return rec, token, nil
}

// put writes the user and its token index in one transaction, only if the
// user does not exist (and, with extra, only if extra's guards hold too).
func (u *Users) put(ctx context.Context, rec *record, extra []clientv3.Cmp, extraOps ...clientv3.Op) (bool, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("encode user %s: %w", rec.Name, err)
	}
	key := UserKey(rec.Tenant, rec.Name)
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}, extra...)
	ops := append([]clientv3.Op{
		clientv3.OpPut(key, string(b)),
		clientv3.OpPut(tokenKey(rec.TokenSHA256), rec.Tenant+"/"+rec.Name),
	}, extraOps...)
	resp, err := u.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("store user %s: %w", rec.Name, err)
	}
	return resp.Succeeded, nil
}

func (u *Users) get(ctx context.Context, tenant, name string) (*record, int64, error) {
	resp, err := u.c.Get(ctx, UserKey(tenant, name))
	if err != nil {
		return nil, 0, fmt.Errorf("read user %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	rec := &record{}
	if err := json.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
		return nil, 0, fmt.Errorf("decode user %s: %w", name, err)
	}
	return rec, resp.Kvs[0].ModRevision, nil
}

// Get returns a user of the tenant.
func (u *Users) Get(ctx context.Context, tenant, name string) (*pilotv1.User, error) {
	if ValidateName("tenant", tenant) != nil || ValidateName("user name", name) != nil {
		return nil, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	rec, _, err := u.get(ctx, tenant, name)
	if err != nil {
		return nil, err
	}
	return rec.user(), nil
}

// List returns the tenant's users by name.
func (u *Users) List(ctx context.Context, tenant string) ([]*pilotv1.User, error) {
	if ValidateName("tenant", tenant) != nil {
		return nil, nil
	}
	resp, err := u.c.Get(ctx, UsersPrefix+tenant+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list users of tenant %s: %w", tenant, err)
	}
	out := make([]*pilotv1.User, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		rec := &record{}
		if err := json.Unmarshal(kv.Value, rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, rec.user())
	}
	return out, nil
}

// Delete removes a user; its token stops working at once.
func (u *Users) Delete(ctx context.Context, tenant, name string) error {
	if ValidateName("tenant", tenant) != nil || ValidateName("user name", name) != nil {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	for {
		rec, rev, err := u.get(ctx, tenant, name)
		if err != nil {
			return err
		}
		key := UserKey(tenant, name)
		resp, err := u.c.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpDelete(key), clientv3.OpDelete(tokenKey(rec.TokenSHA256))).Commit()
		if err != nil {
			return fmt.Errorf("delete user %s: %w", name, err)
		}
		if resp.Succeeded {
			u.log.Info("user deleted", "user", name, "tenant", tenant)
			return nil
		}
	}
}

// Authenticate returns the owner of token: ErrBadToken for any token that
// does not authenticate, another error when pilot cannot tell (etcd).
func (u *Users) Authenticate(ctx context.Context, token string) (Principal, error) {
	errBad := ErrBadToken
	if !wellFormed(token) {
		return Principal{}, errBad
	}
	hash := hashToken(token)
	resp, err := u.c.Get(ctx, tokenKey(hash))
	if err != nil {
		return Principal{}, fmt.Errorf("look up API token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Principal{}, errBad
	}
	tenant, name, ok := strings.Cut(string(resp.Kvs[0].Value), "/")
	if !ok {
		return Principal{}, errBad
	}
	rec, _, err := u.get(ctx, tenant, name)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, errBad
	}
	if err != nil {
		return Principal{}, err
	}
	// The index only points the way: the user's own record must hold this
	// token's hash (a stale index entry must not authenticate).
	if subtle.ConstantTimeCompare([]byte(rec.TokenSHA256), []byte(hash)) != 1 {
		return Principal{}, errBad
	}
	p := Principal{User: rec.Name, Tenant: rec.Tenant, Role: pilotv1.Role(pilotv1.Role_value[rec.Role])}
	if validRole(p.Role) != nil {
		return Principal{}, errBad
	}
	return p, nil
}

// Bootstrap creates the first admin (user "admin" in tenant "default") on
// pilot's first start and writes its token to dataDir/admin.token (0600).
// Later starts change nothing, even if that user was deleted since.
func (u *Users) Bootstrap(ctx context.Context, dataDir string) error {
	resp, err := u.c.Get(ctx, bootstrapKey)
	if err != nil {
		return fmt.Errorf("bootstrap users: %w", err)
	}
	path := filepath.Join(dataDir, AdminTokenFile)
	if len(resp.Kvs) > 0 {
		if _, err := os.Stat(path); err != nil {
			u.log.Info("first admin was created earlier; its token file is gone (create users with an admin's token)", "path", path)
		}
		return nil
	}
	rec, token, err := newRecord(DefaultTenant, AdminUser, pilotv1.Role_ROLE_ADMIN)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("bootstrap users: %w", err)
	}
	// The file first: a crash after the etcd write would otherwise leave
	// an admin whose token nobody has.
	if err := atomicfile.Write(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the first admin's token: %w", err)
	}
	ok, err := u.put(ctx, rec,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(bootstrapKey), "=", 0)},
		clientv3.OpPut(bootstrapKey, time.Now().UTC().Format(time.RFC3339)))
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("bootstrap users: %w", err)
	}
	if !ok {
		// Another pilot sharing this etcd bootstrapped first, or an admin
		// user exists from before: keep theirs.
		_ = os.Remove(path)
		if _, err := u.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(bootstrapKey), "=", 0)).
			Then(clientv3.OpPut(bootstrapKey, time.Now().UTC().Format(time.RFC3339))).Commit(); err != nil {
			return fmt.Errorf("bootstrap users: %w", err)
		}
		u.log.Info("first admin exists already; no token file written")
		return nil
	}
	u.log.Info("first admin created; its token is in the data dir", "user", AdminUser, "tenant", DefaultTenant, "path", path)
	return nil
}
