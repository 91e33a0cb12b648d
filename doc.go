// Package ctxd is ctxd's data model, shared by the server, its storage
// backends and its clients: records, changes, namespaces and pages, the
// limits and validation of keys and values, the errors every layer speaks
// (with the one table that gives each its HTTP status and code), and the
// names of the WebSocket protocol's messages.
//
// It has no dependencies beyond the standard library, so that a program
// that only talks to ctxd over HTTP (package client) compiles no database
// engine and no HTTP framework in.
//
// # Basics
//
// A namespace holds keys; a key holds one JSON value. Every committed change
// gets the next global revision (starting at 1, never reused); each key has a
// version that is 1 on create and grows by one per change. A delete ends a
// key's life: a later put starts it again at version 1.
package ctxd
