//go:build !failpoints

package failpoint

// Hit marks the failpoint name. In this build (without -tags failpoints)
// it does nothing and every call is inlined away.
func Hit(Name) {}
