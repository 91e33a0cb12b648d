// Package testkit is what ctxd's tests share: a goroutine-safe log buffer
// ([SyncBuffer]), a bbolt store in a temp folder checked for consistency
// when the test ends ([OpenBolt]), a commit hook that holds the store's
// writer ([CommitHook]), many keys written at once ([PutKeys]), the whole
// server on a real loopback port ([StartServer], built on package server,
// so tests run what `ctxd serve` runs; [WithSendBuffer] locks its
// connections' send buffers small, so that a client that does not read
// blocks its writes soon), HTTP requests and their answers
// ([NewRequest], [Send]), WebSocket clients of /v1/watch ([DialWatch]), a
// wait for a condition instead of a sleep ([Eventually]), and the
// goroutine-leak check every package's TestMain runs ([VerifyNoLeaks]),
// a failed test's child-process and server logs kept in files when long
// ([LogOnFailure]: the failure stays at the end of the output),
// and the real binary: built once ([BuildCtxd]) and run as a child process
// that tests signal and kill ([StartServe], [Process]).
//
// It also lists a folder's entries ([DirNames]), breaks the network
// between a process and a server ([TCPProxy]: blackhole, cut, heal), and checks HTTP exchanges
// against the API's OpenAPI document ([NewOpenAPI]; the httpapi tests'
// client goes through its [OpenAPI.Transport], package client's tests
// through its [OpenAPI.HTTPClient], and the CLI tests' child processes
// through its [OpenAPI.Proxy]).
//
// # Caveats
//
// Only tests import testkit: the server binary must not compile it (nor
// goleak) in. Because it imports package server, a package that server
// imports (realtime, httpapi, auth, configs, store/...) uses it from
// external test files (package x_test) only: an internal test file that
// imported it would be an import cycle.
package testkit
