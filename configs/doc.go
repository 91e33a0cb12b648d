// Package configs loads ctxd's server configuration.
//
// # Basics
//
// A [Config] starts from [Defaults], which serve out of the box
// (127.0.0.1:8080, data in ./data). [Load] then applies, each overriding the
// one before:
//
//  1. a YAML file (see ctxd.example.yaml in this folder, which documents every
//     setting with its default),
//  2. CTXD_* environment variables, one per setting, named after the setting's
//     YAML path: limits.max_key_bytes is CTXD_LIMITS_MAX_KEY_BYTES,
//  3. command-line flags, given to Load by YAML path.
//
// Every value is checked as it is read. An unknown field, or a value that does
// not parse or is out of range, is an [*Error] that names the setting and
// where it came from, for example
//
//	config: limits.max_value_bytes (env CTXD_LIMITS_MAX_VALUE_BYTES): must be > 0
//
// # Caveats
//
// An environment variable set to the empty string counts as unset.
// CTXD_SERVER and CTXD_TOKEN belong to the client side (the CLI); they are not
// server settings and Load ignores them, as it ignores every CTXD_* variable
// that names no setting; [UnknownEnv] lists the others, for serve to warn
// about (a misspelling would leave a setting at its default unseen).
package configs
