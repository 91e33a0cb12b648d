package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/framework0/ctxd"
)

// txn serves POST /v1/txn: several puts and deletes, all or nothing.
func (s *Server) txn(c echo.Context) error {
	req := c.Request()
	body, err := readBody(req)
	if err != nil {
		return err
	}
	writes, bodyWho, err := decodeTxn(body)
	if err != nil {
		return err
	}
	author := authorOf(c, bodyWho, defaultWho)
	for i := range writes {
		writes[i].Who = author
	}
	res, err := s.st.Txn(req.Context(), writes)
	if err != nil {
		return err
	}
	return respond(c, http.StatusOK, func(b []byte) []byte { return appendTxnResult(b, &res) })
}

// decodeTxn parses and checks a transaction body. Unknown fields are refused
// so that a misspelt "if_version" cannot silently drop a guard.
// It returns the writes without their who, and the who the body gives.
func decodeTxn(body []byte) (writes []ctxd.Write, bodyWho string, err error) {
	var tr ctxd.TxnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tr); err != nil {
		return nil, "", badRequest("transaction body is not valid: " + ctxd.DecodeErrorMessage(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, "", badRequest("transaction body has data after the JSON object")
	}
	if err := ctxd.CheckDuplicateMembers(body, "value", "patch"); err != nil {
		return nil, "", err
	}
	if len(tr.Ops) == 0 {
		return nil, "", badRequest(`transaction has no ops: give "ops": [{"op":"put",...}]`)
	}
	writes = make([]ctxd.Write, len(tr.Ops))
	for i := range tr.Ops {
		op := &tr.Ops[i]
		w := ctxd.Write{Namespace: op.Namespace, Key: op.Key, Expect: op.IfVersion}
		if w.Namespace == "" {
			w.Namespace = ctxd.DefaultNamespace
		}
		at := "ops[" + strconv.Itoa(i) + "]"
		switch op.Op {
		case "put":
			if op.Value == nil {
				return nil, "", badRequest(at + `: a put needs a "value"`)
			}
			w.Op, w.Value = ctxd.OpPut, op.Value
		case "delete":
			if op.Value != nil {
				return nil, "", badRequest(at + `: a delete takes no "value"`)
			}
			if op.TTL != nil {
				return nil, "", badRequest(at + `: a delete takes no "ttl"`)
			}
			w.Op = ctxd.OpDelete
		case "patch":
			if op.Patch == nil || op.Value != nil {
				return nil, "", badRequest(at + `: a patch needs a "patch" (a merge patch or a JSON Patch) and takes no "value"`)
			}
			typ, err := ctxd.ParsePatchType(op.PatchType, op.Patch)
			if err != nil {
				return nil, "", badRequest(at + ": " + err.Error())
			}
			w.Op, w.Patch = ctxd.OpPatch, ctxd.Patch{Type: typ, Doc: op.Patch}
		default:
			return nil, "", badRequest(at + `: "op" must be "put", "delete" or "patch", got ` + strconv.Quote(op.Op))
		}
		if (op.Patch != nil || op.PatchType != "") && op.Op != "patch" {
			return nil, "", badRequest(at + `: "patch" and "patch_type" belong to a patch`)
		}
		if w.Key == "" {
			return nil, "", badRequest(at + `: "key" must not be empty`)
		}
		ttl, err := ctxd.ParseTTLJSON(op.TTL)
		if err != nil {
			return nil, "", badRequest(at + ": " + err.Error())
		}
		w.TTL = ttl
		writes[i] = w
	}
	return writes, tr.Who, nil
}
