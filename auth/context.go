package auth

import "context"

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
