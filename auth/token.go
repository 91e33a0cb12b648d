package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/framework0/ctxd"
)

// Role is a set of rights; the roles of a token are or-ed together.
type Role uint8

// Roles. Each implies those it contains: write includes read, admin
// includes everything.
const (
	// RoleRead reads keys, lists, history, exports, status, and watches.
	RoleRead Role = 1 << iota
	// RoleWrite is read plus put, delete, transactions, import and
	// WebSocket context_set.
	RoleWrite
	// RoleMetrics reads GET /metrics, nothing else (but what it may do,
	// GET /v1/auth/self, which every token may ask).
	RoleMetrics
	// RoleAdmin may do everything: snapshots, restore, compaction, defrag,
	// dump files on the server's disk, metrics.
	RoleAdmin
)

// roleNames are the names used in the tokens file, in a fixed order.
var roleNames = []struct {
	role Role
	name string
}{{RoleRead, "read"}, {RoleWrite, "write"}, {RoleMetrics, "metrics"}, {RoleAdmin, "admin"}}

// ParseRole returns the role named s (read, write, metrics or admin).
func ParseRole(s string) (Role, error) {
	for _, r := range roleNames {
		if r.name == s {
			return r.role, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (use read, write, metrics or admin)", s)
}

// expand adds the roles that r implies.
func (r Role) expand() Role {
	if r&RoleAdmin != 0 {
		r |= RoleWrite | RoleMetrics
	}
	if r&RoleWrite != 0 {
		r |= RoleRead
	}
	return r
}

// Names returns the names of the roles in r (not those they imply), as
// the tokens file spells them, in a fixed order; an empty list for none.
func (r Role) Names() []string {
	names := []string{}
	for _, rn := range roleNames {
		if r&rn.role != 0 {
			names = append(names, rn.name)
		}
	}
	return names
}

// String lists the roles given (not the implied ones), comma-separated.
func (r Role) String() string { return strings.Join(r.Names(), ",") }

// Token is one configured token: who holds it (Name) and what it may do.
// A nil *Token is the access of a server without access control: every
// method allows everything.
type Token struct {
	// Name identifies the token in logs and messages; it is not secret.
	Name string
	// Namespaces, when not empty, are the only namespaces it may use.
	Namespaces []string
	// Prefixes, when not empty, limit it to keys starting with one of them.
	Prefixes []string

	roles   Role // as given
	rights  Role // roles with what they imply
	hash    [sha256.Size]byte
	id      uint64
	revoked atomic.Bool
	// signs: the changes made with the token are recorded under its
	// name (auth.who: token; set by the Authorizer before the token is
	// in use, never changed after).
	signs bool
}

// Author returns who a change made with t is recorded as. declared is the
// who its request gave ("" for none), fallback what a change that gives
// none is recorded as. A server whose auth.who is token records the
// token's name, so that a change's who says which credential made it
// whatever its request claims: the name alone when the request gave no
// who or the name itself, else the name, a space and the given who in
// parentheses ("deployer (ci-job-42)": a token's name has no space, so
// the first space ends it). Otherwise, and for a nil token (access
// control off), the request's who, as Framework0 records it.
func (t *Token) Author(declared, fallback string) string {
	switch {
	case t == nil || !t.signs:
		if declared == "" {
			return fallback
		}
		return declared
	case declared == "" || declared == t.Name:
		return t.Name
	}
	return t.Name + " (" + declared + ")"
}

// nextID numbers every Token made, so that two tokens are never taken for
// one another (Key), even across reloads.
var nextID atomic.Uint64

// Roles returns the roles given to the token (without those they imply).
func (t *Token) Roles() Role {
	if t == nil {
		return RoleAdmin
	}
	return t.roles
}

// Key identifies this token object: two tokens with the same Key have the
// same rights. Followers that share work between clients (the WebSocket
// hub's frames) must share it only between clients with the same Key.
func (t *Token) Key() string {
	if t == nil {
		return ""
	}
	return strconv.FormatUint(t.id, 10)
}

// Revoked reports whether the token was removed or changed by a reload:
// it may do nothing any more.
func (t *Token) Revoked() bool { return t != nil && t.revoked.Load() }

// Has reports whether the token has role r (given or implied).
func (t *Token) Has(r Role) bool {
	if t == nil {
		return true
	}
	return !t.revoked.Load() && t.rights&r == r
}

// Unlimited reports whether the token is limited to no namespace and no
// prefix.
func (t *Token) Unlimited() bool {
	return t == nil || len(t.Namespaces) == 0 && len(t.Prefixes) == 0
}

// namespaceAllowed reports whether the token may use namespace ns at all.
func (t *Token) namespaceAllowed(ns string) bool {
	return len(t.Namespaces) == 0 || slices.Contains(t.Namespaces, ns)
}

// keyAllowed reports whether key starts with one of the token's prefixes.
func (t *Token) keyAllowed(key string) bool {
	if len(t.Prefixes) == 0 {
		return true
	}
	for _, p := range t.Prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// CanRead reports whether the token may read ns/key.
func (t *Token) CanRead(ns, key string) bool {
	return t == nil || t.Has(RoleRead) && t.namespaceAllowed(ns) && t.keyAllowed(key)
}

// CanWrite reports whether the token may put or delete ns/key.
func (t *Token) CanWrite(ns, key string) bool {
	return t == nil || t.Has(RoleWrite) && t.namespaceAllowed(ns) && t.keyAllowed(key)
}

// CanReadPrefix reports whether the token may read every key of ns that
// starts with prefix ("" : the whole namespace).
func (t *Token) CanReadPrefix(ns, prefix string) bool {
	return t == nil || t.Has(RoleRead) && t.namespaceAllowed(ns) && t.keyAllowed(prefix)
}

// CanWriteAll reports whether the token may write every key of ns.
func (t *Token) CanWriteAll(ns string) bool {
	return t == nil || t.Has(RoleWrite) && t.namespaceAllowed(ns) && len(t.Prefixes) == 0
}

// SeesNamespace reports whether the token may read some keys of ns.
func (t *Token) SeesNamespace(ns string) bool {
	return t == nil || t.Has(RoleRead) && t.namespaceAllowed(ns)
}

// ReadablePrefixes returns the key prefixes of ns the token may read, none
// inside another (so that counts under them add up), sorted; [""] when it
// may read the whole namespace, none when it may read nothing of ns.
func (t *Token) ReadablePrefixes(ns string) []string {
	if !t.SeesNamespace(ns) {
		return nil
	}
	if t == nil || len(t.Prefixes) == 0 {
		return []string{""}
	}
	ps := slices.Clone(t.Prefixes)
	slices.Sort(ps) // a prefix sorts before every key that extends it
	out := ps[:0]
	for _, p := range ps {
		if len(out) == 0 || !strings.HasPrefix(p, out[len(out)-1]) {
			out = append(out, p)
		}
	}
	return out
}

// Describe says what the token may do, for error messages to its holder:
// `token "ci" (roles write; namespaces staging; key prefixes deploy/)`.
func (t *Token) Describe() string {
	if t == nil {
		return "no token"
	}
	var b strings.Builder
	b.WriteString("token " + strconv.Quote(t.Name) + " (roles " + t.roles.String())
	if len(t.Namespaces) > 0 {
		b.WriteString("; namespaces " + strings.Join(t.Namespaces, ","))
	}
	if len(t.Prefixes) > 0 {
		b.WriteString("; key prefixes " + strings.Join(t.Prefixes, ","))
	}
	if t.Revoked() {
		b.WriteString("; revoked")
	}
	b.WriteString(")")
	return b.String()
}

// Info says what the token may do, for its holder (GET /v1/auth/self):
// its name, the roles given, the roles it has with what they imply
// (none once revoked), and its limits (none: unlimited). Never its
// secret or hash. A nil token (access control off) may do everything:
// no name, the admin role, every right, no limits.
func (t *Token) Info() ctxd.TokenInfo {
	info := ctxd.TokenInfo{AccessControl: t != nil, Roles: t.Roles().Names(), Rights: []string{}}
	for _, rn := range roleNames {
		if t.Has(rn.role) {
			info.Rights = append(info.Rights, rn.name)
		}
	}
	if t != nil {
		info.Name = t.Name
		info.Namespaces = slices.Clone(t.Namespaces)
		info.Prefixes = slices.Clone(t.Prefixes)
	}
	return info
}

// sameRights reports whether u has the same hash, name and rights as t.
// Limits are compared as sets: the same namespaces or prefixes in
// another order (or one named twice) are the same rights, and a reload
// that only reorders them must not revoke the token, closing its
// connections with a message that its rights were changed.
func (t *Token) sameRights(u *Token) bool {
	return t.hash == u.hash && t.Name == u.Name && t.roles == u.roles &&
		sameSet(t.Namespaces, u.Namespaces) && sameSet(t.Prefixes, u.Prefixes)
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Compact(slices.Sorted(slices.Values(a))), slices.Compact(slices.Sorted(slices.Values(b)))
	return slices.Equal(a, b)
}

// Challenge is the WWW-Authenticate challenge of a 401 (RFC 6750);
// ChallengeScope that of a 403, whichever part of the server refuses.
const (
	Challenge      = `Bearer realm="ctxd"`
	ChallengeScope = Challenge + `, error="insufficient_scope"`
)

// SecretPrefix starts every token made by NewSecret, so that secret
// scanners and people recognize one.
const SecretPrefix = "ctxd_"

// MinSecretLen is the shortest secret HashSecret accepts from a person
// (NewSecret's are 48 characters).
const MinSecretLen = 32

// hashPrefix starts a hash in the tokens file: the algorithm.
const hashPrefix = "sha256:"

// NewSecret returns a new random token: "ctxd_" and 32 random bytes in
// base64url (43 characters).
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// ErrWeakSecret is returned by CheckSecret for a secret too short, or with
// characters that cannot go in an HTTP header.
var ErrWeakSecret = errors.New("weak or malformed secret")

// CheckSecret refuses secrets shorter than MinSecretLen or holding
// anything but printable ASCII without spaces (a header could not carry
// them).
func CheckSecret(secret string) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("%w: %d characters, at least %d needed (use `ctxd token new` for a random one)",
			ErrWeakSecret, len(secret), MinSecretLen)
	}
	for i := 0; i < len(secret); i++ {
		if secret[i] <= ' ' || secret[i] > '~' {
			return fmt.Errorf("%w: only printable ASCII without spaces", ErrWeakSecret)
		}
	}
	return nil
}

// HashSecret returns what the tokens file holds for secret: "sha256:" and
// the hex SHA-256 of the secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// parseHash reads "sha256:<64 hex digits>".
func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	if !ok || len(hexPart) != 2*sha256.Size {
		return h, fmt.Errorf("hash must be %q followed by 64 hex digits, as `ctxd token hash` prints", hashPrefix)
	}
	if _, err := hex.Decode(h[:], []byte(hexPart)); err != nil {
		return h, fmt.Errorf("hash must be %q followed by 64 hex digits: %v", hashPrefix, err)
	}
	return h, nil
}
