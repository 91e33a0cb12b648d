package auth

import (
	"context"
	"sync/atomic"
)

// tokenKey is the context key of a request's token.
type tokenKey struct{}

// NewContext returns ctx carrying the token a request passed access control
// with, so that whatever serves the request (an API handler, the WebSocket
// hub) can check what the token may see without knowing the transport.
func NewContext(ctx context.Context, t *Token) context.Context {
	return context.WithValue(ctx, tokenKey{}, t)
}

// FromContext returns the token NewContext stored in ctx, or nil: nil when
// access control is off (nil may do everything: see Token).
func FromContext(ctx context.Context) *Token {
	t, _ := ctx.Value(tokenKey{}).(*Token)
	return t
}

// noteKey is the context key of a request's note of its token.
type noteKey struct{}

// WithNote returns ctx with room for the token that a handler checking
// tokens itself learns while it serves the request (Socket.IO's comes in
// its CONNECT packet, not with the request), for the access log to name
// (Noted). A noted token grants nothing: FromContext never returns it.
func WithNote(ctx context.Context) context.Context {
	return context.WithValue(ctx, noteKey{}, new(atomic.Pointer[Token]))
}

// Note notes t in ctx's room (WithNote), if it has one and t is not nil.
func Note(ctx context.Context, t *Token) {
	if p, ok := ctx.Value(noteKey{}).(*atomic.Pointer[Token]); ok && t != nil {
		p.Store(t)
	}
}

// Noted returns the token noted in ctx (Note), or nil.
func Noted(ctx context.Context) *Token {
	if p, ok := ctx.Value(noteKey{}).(*atomic.Pointer[Token]); ok {
		return p.Load()
	}
	return nil
}
