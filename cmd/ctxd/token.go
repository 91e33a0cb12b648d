package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/internal/fsutil"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make access tokens and their hashes for auth.tokens_file",
		Long: `Make access tokens for a server with access control (auth.mode; see README,
"Access control"). The server's tokens file holds only each token's SHA-256
hash, with its name, roles and limits; the token itself is shown once and
given to its holder, who sends it as "Authorization: Bearer <token>"
(ctxd --token or CTXD_TOKEN). After changing the file, send the server
SIGHUP (systemctl reload ctxd) to load it.`,
	}
	cmd.AddCommand(a.tokenNewCmd(), a.tokenHashCmd())
	return group(cmd)
}

func (a *app) tokenNewCmd() *cobra.Command {
	var (
		name, appendTo       string
		roles, nss, prefixes []string
	)
	cmd := &cobra.Command{
		Use:   "new --name NAME --role ROLE [--ns NS]... [--prefix P]... [--append FILE]",
		Short: "Make a random token and its tokens file entry",
		Long: `Make a random token (ctxd_ and 43 characters: 256 random bits) and print it,
then the entry of the tokens file that grants it its rights.

Roles: read (get, list, history, export, watch, status), write (read, plus
put, delete, transactions, import), admin (everything: snapshots, restore,
compact, defrag, dump files on the server, metrics), metrics (GET /metrics
only). --ns and --prefix limit a read or write token to those namespaces
and key prefixes.

With --append FILE the entry is added to the tokens file FILE (created if
missing; through a symbolic link, the file it leads to; the result is
checked before it replaces FILE) and only the token is printed.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usagef("--name is required: who or what will hold the token (ci, dashboard, alice)")
			}
			if len(roles) == 0 {
				return usagef("--role is required: read, write, admin or metrics")
			}
			secret := auth.NewSecret()
			entry := tokenEntry(name, auth.HashSecret(secret), roles, nss, prefixes)
			// Check the entry as the server will read it.
			if _, err := auth.ParseTokens([]byte("tokens:\n" + entry)); err != nil {
				return &usageError{errors.New(strings.TrimPrefix(err.Error(), "tokens file: tokens[0] ("+name+"): "))}
			}
			out := cmd.OutOrStdout()
			if appendTo != "" {
				if err := appendTokenEntry(appendTo, entry); err != nil {
					return err
				}
				_, err := fmt.Fprintln(out, secret)
				return err
			}
			_, err := fmt.Fprintf(out, "%s\n\n# Add under \"tokens:\" in the tokens file (auth.tokens_file), then reload the server (SIGHUP):\n%s",
				secret, entry)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "`name` of the token's holder, shown in logs and errors")
	f.StringSliceVar(&roles, "role", nil, "`role`: read, write, admin or metrics (repeatable)")
	f.StringSliceVar(&nss, "ns", nil, "limit the token to this `namespace` (repeatable)")
	f.StringArrayVar(&prefixes, "prefix", nil, "limit the token to keys starting with this `prefix` (repeatable)")
	f.StringVar(&appendTo, "append", "", "add the entry to this tokens `file` and print only the token")
	return cmd
}

// tokenEntry is one entry of the tokens file, as YAML under "tokens:".
func tokenEntry(name, hash string, roles, nss, prefixes []string) string {
	list := func(vs []string) string {
		q := make([]string, len(vs))
		for i, v := range vs {
			q[i] = strconv.Quote(v)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s\n    hash: %s\n    roles: %s\n", strconv.Quote(name), hash, list(roles))
	if len(nss) > 0 {
		fmt.Fprintf(&b, "    namespaces: %s\n", list(nss))
	}
	if len(prefixes) > 0 {
		fmt.Fprintf(&b, "    prefixes: %s\n", list(prefixes))
	}
	return b.String()
}

// appendTokenEntry adds entry to the tokens file at path (creating it),
// checks the result as the server would read it, and replaces the file
// atomically and durably (fsutil.WriteFileBytes), with the mode and owner
// the file had: the server (a systemd unit's User=ctxd) must still read
// it after `ctxd token new --append` run as root. A new file is 0600, and
// 0640 when root makes it in a folder of another group (the unit's
// /etc/ctxd, root:ctxd), whose group it is given: the server, of that
// group, reads it as it reads ctxd.yaml there. At 0600 it could not, and
// stopped at its start (exit 2, permission denied). A path that is a
// symbolic link keeps it: its target is written, in the target's folder.
func appendTokenEntry(path, entry string) error {
	target, err := linkTarget(path)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	perm, before := os.FileMode(0o600), fs.FileInfo(nil)
	if fi, err := os.Stat(target); err == nil {
		perm, before = fi.Mode().Perm(), fi
	} else if dir, err := os.Stat(filepath.Dir(target)); err == nil && fsutil.FolderOwner(dir).OtherGroup() {
		perm = 0o640
	}
	text, err := withTokenEntry(string(old), entry)
	if err != nil {
		return fmt.Errorf("%s: the entry cannot be added: %w", path, err)
	}
	if _, err := auth.ParseTokens([]byte(text)); err != nil {
		return fmt.Errorf("%s: the entry cannot be added: %w", path, err)
	}
	if err := fsutil.WriteFileBytes(target, perm, []byte(text)); err != nil {
		return err
	}
	if before == nil {
		return nil
	}
	if err := fsutil.KeepOwner(target, before); err != nil {
		return fmt.Errorf("%s: written, but its owner could not be kept: %w", path, err)
	}
	return nil
}

// withTokenEntry returns the tokens file text with entry, of tokenEntry's
// form (a block list item under "tokens:", indented by 2), added at its
// end. An empty file gets "tokens:" first; an empty list in flow style
// ("tokens: []", valid YAML, a file emptied by hand or a template) or a
// null ("tokens: ~") is taken out, leaving "tokens:", and a block list
// indented otherwise than by 2 ("- name:" under "tokens:", as PyYAML
// and yq write it) gets the entry at its own indentation: the entry added
// as it was made was a YAML error in each case. A list or a file in flow
// style with something in it ("tokens: [{...}]") cannot take a block item
// after it: it is refused, saying what to change. Text that is not YAML
// gets the entry as it is, for ParseTokens to say what is wrong with it.
func withTokenEntry(text, entry string) (string, error) {
	if strings.TrimSpace(text) == "" {
		return "# ctxd tokens file (auth.tokens_file): hashes only, made by `ctxd token new`.\ntokens:\n" + entry, nil
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return text + entry, nil
	}
	if len(doc.Content) == 0 { // comments only
		return text + "tokens:\n" + entry, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return text + entry, nil
	}
	const blockStyle = `write it in block style, "tokens:" then one "  - name: ..." item per token, as ctxd token new prints them`
	if root.Style&yaml.FlowStyle != 0 {
		return "", fmt.Errorf("line %d: the file is a mapping in flow style ({...}), which an entry cannot be added to: %s", root.Line, blockStyle)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "tokens" {
			list = root.Content[i+1]
		}
	}
	switch {
	case list == nil:
	case list.Kind == yaml.SequenceNode && list.Style&yaml.FlowStyle == 0:
		return text + reindent(entry, list.Column-1), nil
	case list.Kind == yaml.SequenceNode:
		if len(list.Content) > 0 {
			return "", fmt.Errorf("line %d: tokens is a list in flow style ([...]), which an entry cannot be added to: %s", list.Line, blockStyle)
		}
		start := offsetOf(text, list.Line, list.Column)
		end := start + 1 // past "["
		for end < len(text) && (text[end] == ' ' || text[end] == '\t') {
			end++
		}
		if end == len(text) || text[end] != ']' {
			return "", fmt.Errorf("line %d: tokens is an empty list in flow style ([]) spread over lines, which an entry cannot be added to: %s", list.Line, blockStyle)
		}
		return cutValue(text, start, end+1) + entry, nil
	case list.Kind == yaml.ScalarNode && list.ShortTag() == "!!null" && list.Value != "":
		start := offsetOf(text, list.Line, list.Column)
		return cutValue(text, start, start+len(list.Value)) + entry, nil
	}
	return text + entry, nil
}

// reindent moves entry, a tokenEntry indented by 2, to indent spaces.
func reindent(entry string, indent int) string {
	lines := strings.SplitAfter(entry, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = strings.Repeat(" ", indent) + strings.TrimPrefix(l, "  ")
		}
	}
	return strings.Join(lines, "")
}

// offsetOf is the byte offset in text of a YAML node's line and column
// (from 1, the column in characters).
func offsetOf(text string, line, column int) int {
	off := 0
	for ; line > 1; line-- {
		off += strings.IndexByte(text[off:], '\n') + 1
	}
	for ; column > 1; column-- {
		_, size := utf8.DecodeRuneInString(text[off:])
		off += size
	}
	return off
}

// cutValue takes text[start:end], a value, out of text, and the blanks
// before it when nothing but blanks follows it on its line ("tokens: []"
// becomes "tokens:").
func cutValue(text string, start, end int) string {
	before, after := text[:start], text[end:]
	rest, _, _ := strings.Cut(after, "\n")
	if strings.TrimSpace(rest) == "" {
		before = strings.TrimRight(before, " \t")
	}
	return before + after
}

func (a *app) tokenHashCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash [TOKEN]",
		Short: "Print the hash of a token for the tokens file",
		Long: `Print the hash ("sha256:<hex>") the tokens file holds for TOKEN, or for the
first line of standard input without an argument (which keeps the token out
of the shell history and the process list). A token chosen by hand must be
at least 32 printable ASCII characters; 'ctxd token new' makes random ones.`,
		Args: cobra.MaximumNArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			var secret string
			if len(args) == 1 {
				secret = args[0]
			} else {
				sc := bufio.NewScanner(cmd.InOrStdin())
				if sc.Scan() {
					secret = strings.TrimSpace(sc.Text())
				}
				if err := sc.Err(); err != nil {
					return err
				}
			}
			if err := auth.CheckSecret(secret); err != nil {
				return &usageError{err}
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), auth.HashSecret(secret))
			return err
		}),
	}
}
