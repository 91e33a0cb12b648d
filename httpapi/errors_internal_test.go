package httpapi

import (
	"fmt"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd"
)

// A full disk under a snapshot, an upload or a dump is 507 with the file
// named (it was 500 "internal server error", the cause only in the log).
func TestAFullDiskIsInsufficientStorage(t *testing.T) {
	err := fmt.Errorf("create snapshot: write snapshot: %w",
		&os.PathError{Op: "write", Path: "/srv/snapshots/.tmp-create-1", Err: syscall.ENOSPC})
	status, code, known := classify(err)
	assert.True(t, known)
	assert.Equal(t, http.StatusInsufficientStorage, status)
	assert.Equal(t, ctxd.CodeInsufficientStorage, code)
	assert.Contains(t, errorCodes(), code, "in the OpenAPI document's enum")
}
