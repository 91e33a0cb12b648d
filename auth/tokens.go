package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/yamldoc"
)

// Tokens is a set of configured tokens, as a tokens file defines them.
type Tokens struct {
	list []*Token
}

// fileEntry is one token of the tokens file.
type fileEntry struct {
	Name  string   `yaml:"name"`
	Hash  string   `yaml:"hash"`
	Roles []string `yaml:"roles"`
	// Namespaces and Prefixes are nodes, so that an empty list (or none:
	// "namespaces:" with nothing after it, a template's empty variable)
	// is told from the field left out: it would allow everything.
	Namespaces yaml.Node `yaml:"namespaces"`
	Prefixes   yaml.Node `yaml:"prefixes"`
}

// limits reads a token's namespaces or prefixes (field): nil when the
// field is left out (no limit); an empty list is an error, since it would
// allow every one of them, where whoever emptied it meant to allow none.
func limits(n yaml.Node, field, what string) ([]string, error) {
	if n.Kind == 0 {
		return nil, nil
	}
	var items []string
	if n.ShortTag() != "!!null" {
		if err := n.Decode(&items); err != nil {
			return nil, fmt.Errorf("%s: %w", field, describeYAMLError(err))
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: an empty list would allow every %s: leave %q out to allow all, or name at least one", field, what, field)
	}
	return items, nil
}

// tokensDoc is the whole tokens file.
type tokensDoc struct {
	Tokens []fileEntry `yaml:"tokens"`
}

// yamlTypeWords says what each type the tokens file decodes into is, in
// the file's words: yaml's errors name Go types ("cannot unmarshal !!int
// `3` into []auth.fileEntry").
var yamlTypeWords = strings.NewReplacer(
	reflect.TypeFor[tokensDoc]().String(), `a mapping with "tokens:"`,
	reflect.TypeFor[[]fileEntry]().String(), "a list of tokens (- name: ...)",
	reflect.TypeFor[fileEntry]().String(), "a token (name, hash, roles, namespaces, prefixes)",
	reflect.TypeFor[[]string]().String(), "a list, such as [read]",
	reflect.TypeFor[string]().String(), "a string",
)

// describeYAMLError rewrites the Go types a yaml.TypeError names.
func describeYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	lines := make([]string, len(te.Errors))
	for i, l := range te.Errors {
		lines[i] = yamlTypeWords.Replace(l)
	}
	return errors.New(strings.Join(lines, "; "))
}

// maxNameLen bounds a token's name.
const maxNameLen = 64

// ParseTokens reads a tokens file:
//
//	tokens:
//	  - name: deployer
//	    hash: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    roles: [write]
//	    namespaces: [staging, prod]   # optional
//	    prefixes: [deploy/]           # optional
//
// Unknown fields, duplicate names or hashes, unknown roles, bad namespace
// names, and limits on an admin or metrics token are errors.
func ParseTokens(data []byte) (*Tokens, error) {
	var doc tokensDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("tokens file: %w", describeYAMLError(err))
	}
	// The tokens of a second document ("---") were ignored: one appended
	// there (ctxd token new --append) was printed, and never accepted.
	if line, err := yamldoc.SecondDocument(dec); err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	} else if line > 0 {
		return nil, fmt.Errorf("tokens file: line %d: a second YAML document (after ---): put every token in one", line)
	}
	if len(doc.Tokens) == 0 {
		return nil, errors.New(`tokens file: no tokens: add entries under "tokens:" (ctxd token new prints one)`)
	}
	ts := &Tokens{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, e := range doc.Tokens {
		t, err := e.token()
		if err != nil {
			return nil, fmt.Errorf("tokens file: tokens[%d] (%s): %w", i, e.Name, err)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("tokens file: tokens[%d]: name %q is used twice", i, t.Name)
		}
		if other, ok := hashes[t.hash]; ok {
			return nil, fmt.Errorf("tokens file: tokens[%d] (%s): same hash as %q: give each holder its own token", i, t.Name, other)
		}
		names[t.Name], hashes[t.hash] = true, t.Name
		ts.list = append(ts.list, t)
	}
	return ts, nil
}

func (e fileEntry) token() (*Token, error) {
	if e.Name == "" || len(e.Name) > maxNameLen || strings.ContainsFunc(e.Name, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, fmt.Errorf("name must be 1 to %d printable ASCII characters without spaces", maxNameLen)
	}
	h, err := parseHash(e.Hash)
	if err != nil {
		return nil, err
	}
	t := &Token{Name: e.Name, hash: h, id: nextID.Add(1)}
	if len(e.Roles) == 0 {
		return nil, errors.New("roles: give at least one of read, write, metrics, admin")
	}
	for _, name := range e.Roles {
		r, err := ParseRole(name)
		if err != nil {
			return nil, fmt.Errorf("roles: %w", err)
		}
		t.roles |= r
	}
	t.rights = t.roles.expand()
	namespaces, err := limits(e.Namespaces, "namespaces", "namespace")
	if err != nil {
		return nil, err
	}
	prefixes, err := limits(e.Prefixes, "prefixes", "key")
	if err != nil {
		return nil, err
	}
	for _, ns := range namespaces {
		if err := ctxd.ValidateNamespace(ns); err != nil {
			return nil, fmt.Errorf("namespaces: %q is not a namespace name (1 to 64 of A-Z a-z 0-9 . _ -)", ns)
		}
		if !contains(t.Namespaces, ns) {
			t.Namespaces = append(t.Namespaces, ns)
		}
	}
	for _, p := range prefixes {
		if p == "" {
			return nil, errors.New(`prefixes: an empty prefix would allow every key: leave "prefixes" out instead`)
		}
		if len(p) > ctxd.MaxKeyBytes {
			return nil, fmt.Errorf("prefixes: longer than a key can be (%d bytes)", ctxd.MaxKeyBytes)
		}
		if !contains(t.Prefixes, p) {
			t.Prefixes = append(t.Prefixes, p)
		}
	}
	if !t.Unlimited() && t.roles&(RoleAdmin|RoleMetrics) != 0 {
		return nil, errors.New("an admin or metrics token cannot be limited to namespaces or prefixes " +
			"(snapshots, restores, compaction and metrics cover the whole database): give it read or write instead")
	}
	return t, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LoadTokens reads and parses the tokens file at path.
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fsutil.ReadDenied(err)
	}
	return ParseTokens(data)
}

// Len is the number of tokens.
func (ts *Tokens) Len() int { return len(ts.list) }

// Lookup returns the token whose secret is secret, or nil. It hashes
// secret and compares the hash with every token's in constant time,
// going through all of them whatever matches, so that the time taken
// says nothing about which hash bytes matched.
func (ts *Tokens) Lookup(secret string) *Token {
	if secret == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(secret))
	var found *Token
	for _, t := range ts.list {
		if subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1 {
			found = t
		}
	}
	return found
}

// Authorizer holds the tokens of a file and reloads them. It is safe for
// concurrent use.
type Authorizer struct {
	path   string
	opts   Options
	tokens atomic.Pointer[Tokens]
	mu     sync.Mutex // serialises reloads; guards onRevoke
	// onRevoke are told after a reload that revoked tokens (OnRevoke).
	onRevoke []func()
}

// Options are the server's settings of access control beyond its tokens.
type Options struct {
	// SignChanges records every change made with a token under the
	// token's name (auth.who: token; see Token.Author).
	SignChanges bool
}

// NewAuthorizer loads the tokens file at path.
func NewAuthorizer(path string, opts Options) (*Authorizer, error) {
	ts, err := LoadTokens(path)
	if err != nil {
		return nil, err
	}
	a := &Authorizer{path: path, opts: opts}
	a.apply(ts)
	a.tokens.Store(ts)
	return a, nil
}

// apply gives the tokens of a newly read file the server's options,
// before any request uses them.
func (a *Authorizer) apply(ts *Tokens) {
	for _, t := range ts.list {
		t.signs = a.opts.SignChanges
	}
}

// Path is the tokens file.
func (a *Authorizer) Path() string { return a.path }

// Tokens returns the current set.
func (a *Authorizer) Tokens() *Tokens { return a.tokens.Load() }

// Authenticate returns the token whose secret is secret, or nil.
func (a *Authorizer) Authenticate(secret string) *Token {
	return a.tokens.Load().Lookup(secret)
}

// Successor returns the token of the current file that opens with t's
// secret: t itself while no reload revoked it, the token with t's new
// rights after a reload that changed them, nil when a reload removed the
// secret (a connection opened again with it is refused). The realtime
// doors tell by it whether the clients they close for a revoked token
// may come back.
func (a *Authorizer) Successor(t *Token) *Token {
	if t == nil {
		return nil
	}
	for _, u := range a.tokens.Load().list {
		if u.hash == t.hash { // hashes are unique in a file (ParseTokens)
			return u
		}
	}
	return nil
}

// OnRevoke has f called after every reload that revoked tokens, once
// their checks fail (Token.Revoked is true): the realtime doors close the
// connections opened with them. f runs in the goroutine that called
// Reload, after Reload released its lock; it must not block.
func (a *Authorizer) OnRevoke(f func()) {
	a.mu.Lock()
	a.onRevoke = append(a.onRevoke, f)
	a.mu.Unlock()
}

// Reload reads the tokens file again. On error the current tokens stay.
// A token that is in the new file with the same name and rights stays the
// same object (connections opened with it go on); any other old token is
// revoked (a token whose rights changed in any way, reduced or not, is a
// new token), and the OnRevoke functions are called. It returns how many
// tokens are loaded and how many were revoked.
func (a *Authorizer) Reload() (loaded, revoked int, err error) {
	loaded, revoked, hooks, err := a.reload()
	if revoked > 0 {
		for _, f := range hooks {
			f()
		}
	}
	return loaded, revoked, err
}

func (a *Authorizer) reload() (loaded, revoked int, hooks []func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.tokens.Load()
	next, err := LoadTokens(a.path)
	if err != nil {
		return old.Len(), 0, nil, err
	}
	a.apply(next)
	kept := map[*Token]bool{}
	for i, t := range next.list {
		for _, o := range old.list {
			if o.sameRights(t) {
				next.list[i] = o
				kept[o] = true
				break
			}
		}
	}
	a.tokens.Store(next)
	for _, o := range old.list {
		if !kept[o] {
			o.revoked.Store(true)
			revoked++
		}
	}
	return next.Len(), revoked, slices.Clone(a.onRevoke), nil
}
