package configs

import (
	"slices"
	"strings"
)

// UnknownVar is a CTXD_* environment variable that names no setting.
type UnknownVar struct {
	Name string
	// Nearest is the variable of the setting whose name is closest, when
	// one is close enough to be the one meant; "" otherwise.
	Nearest string
}

// UnknownEnv returns, sorted by name, the CTXD_* variables in environ (as
// os.Environ returns them) that name no setting and are none of others
// (the variables other parts of ctxd read, such as its client's
// CTXD_SERVER). Load ignores them, as a variable may be meant for another
// program; most are misspellings, which would otherwise leave a setting at
// its default without a word, so the server warns about each at start.
func UnknownEnv(environ []string, others ...string) []UnknownVar {
	var out []UnknownVar
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(others, name) || slices.ContainsFunc(out, func(u UnknownVar) bool { return u.Name == name }) {
			continue
		}
		if _, known := settingOfEnv(name); known {
			continue
		}
		out = append(out, UnknownVar{Name: name, Nearest: nearestEnv(name)})
	}
	slices.SortFunc(out, func(a, b UnknownVar) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func settingOfEnv(name string) (setting, bool) {
	for _, s := range settings {
		if s.env() == name {
			return s, true
		}
	}
	return setting{}, false
}

// nearestEnv returns the setting variable closest to name in edit
// distance, if it is within a third of the part after CTXD_ (and at most
// 4 edits): CTXD_LIMTS_MAX_TTL finds CTXD_LIMITS_MAX_TTL, CTXD_FOO nothing.
func nearestEnv(name string) string {
	best, bestDist := "", 0
	limit := min(4, len(strings.TrimPrefix(name, EnvPrefix))/3)
	for _, s := range settings {
		if d := editDistance(name, s.env()); d <= limit && (best == "" || d < bestDist) {
			best, bestDist = s.env(), d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
