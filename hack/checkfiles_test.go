// Package hack holds the repository's scripts (code generation, verification, the node mode's
// packages); this file tests the check that keeps build output out of git.
package hack

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckFiles feeds hack/check-files.sh (run by make verify) files as a build would leave
// them: an ELF, a Mach-O and a PE header, and a file of 1 MiB + 1 byte are refused; a shell
// script (executable), a file of exactly 1 MiB and a text that starts like a PE are accepted.
func TestCheckFiles(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	dir := t.TempDir()
	pe := make([]byte, 128)
	copy(pe, "MZ")
	binary.LittleEndian.PutUint32(pe[60:], 64)
	copy(pe[64:], "PE\x00\x00")
	const mib = 1 << 20
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string // "" when accepted
	}{
		{"elf", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 57)...), 0o755, "is a compiled binary (ELF)"},
		{"macho", []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"), 0o755, "is a compiled binary (Mach-O)"},
		{"pe.exe", pe, 0o644, "is a compiled binary (PE)"},
		{"big", bytes.Repeat([]byte("a"), mib+1), 0o644, "is 1048577 bytes, over 1 MiB"},
		{"script.sh", []byte("#!/bin/sh\necho hello\n"), 0o755, ""},
		{"exactly-1MiB", bytes.Repeat([]byte("a"), mib), 0o644, ""},
		{"mz.txt", []byte("MZ is how this note starts, and it is text.\n"), 0o644, ""},
		{"empty", nil, 0o644, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("bash", "check-files.sh", path).CombinedOutput()
			if tc.want == "" {
				if err != nil {
					t.Errorf("refused: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want a refusal saying %q", tc.want)
			}
			if !strings.Contains(string(out), path+" "+tc.want) {
				t.Errorf("said:\n%s\nwant %q", out, tc.want)
			}
		})
	}

	// Without arguments it checks what git tracks: this repository is clean.
	if out, err := exec.Command("bash", "check-files.sh").CombinedOutput(); err != nil {
		t.Errorf("the repository's tracked files: %v\n%s", err, out)
	}
}
