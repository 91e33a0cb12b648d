package patch

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
)

// A stored value is kept as sent, an object that names a member twice
// ({"a":1,"a":2}) too: refusing it would refuse values accepted so far.
// A patch never changes what it does not name, so it is refused where it
// could not keep both copies (or could not tell which one it names):
// checkPath for a JSON Patch, merge for a merge patch.

// nameSeed hashes member names for repeated.
var nameSeed = maphash.MakeSeed()

// repeated returns a name that ms, an object's members, has twice. It
// runs on every object on a JSON Patch operation's way, in the writer:
// up to 128 members, an open-addressing table on the stack (64 members:
// 0.5 us and nothing allocated, against 3.3 us and 3.5 KB for a map, 6.6
// us comparing every pair); beyond, a map.
func repeated(ms []member) (string, bool) {
	if len(ms) <= 128 {
		var table [256]uint8 // a member's index + 1; 0 is free
		for i, m := range ms {
			for j := maphash.String(nameSeed, m.name) & 255; ; j = (j + 1) & 255 {
				k := table[j]
				if k == 0 {
					table[j] = uint8(i + 1)
					break
				}
				if ms[k-1].name == m.name {
					return m.name, true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, len(ms))
	for _, m := range ms {
		if _, ok := seen[m.name]; ok {
			return m.name, true
		}
		seen[m.name] = struct{}{}
	}
	return "", false
}

// repeatedMember is the reason a patch is refused on a value whose object
// at the reference tokens object names member name twice: which member,
// where, why the patch cannot apply, and what to do instead.
func repeatedMember(object []string, name, why string) string {
	where := "the value"
	if len(object) > 0 {
		where = "the object at " + strconv.Quote(pointerOf(object))
	}
	at := pointerOf(object) + "/" + escapeToken(name)
	return fmt.Sprintf("%s names member %q twice (at %q; a value is stored as sent): %s, so it is not patched: PUT the whole value, with each member once",
		where, name, at, why)
}

// pointerOf is the JSON pointer (RFC 6901) of reference tokens ts.
func pointerOf(ts []string) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

// escapeToken escapes a reference token: "~" as "~0", "/" as "~1".
func escapeToken(t string) string {
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}
