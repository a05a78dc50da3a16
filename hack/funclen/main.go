// Command funclen lists the non-test, non-generated Go functions longer than a limit, so that
// make verify keeps every function a short list of named steps. Usage: funclen -max 80 DIR...
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	limit := flag.Int("max", 80, "the most lines a function may take, from its signature to its closing brace")
	flag.Parse()
	long, err := longFunctions(flag.Args(), *limit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "funclen:", err)
		os.Exit(2)
	}
	for _, l := range long {
		fmt.Fprintln(os.Stderr, l)
	}
	if len(long) > 0 {
		fmt.Fprintf(os.Stderr, "funclen: %d functions over %d lines: split each into named steps\n", len(long), *limit)
		os.Exit(1)
	}
}

// longFunctions returns "file:line: name is N lines" for every function over limit in the Go
// files under roots, leaving out tests, generated code and the hack/tools modules.
func longFunctions(roots []string, limit int) ([]string, error) {
	var out []string
	fset := token.NewFileSet()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if name := d.Name(); name == "generated" || name == "tools" || name == "testdata" || strings.HasPrefix(name, ".") && path != root {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasPrefix(d.Name(), "zz_generated") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
				if n := end.Line - start.Line + 1; n > limit {
					out = append(out, fmt.Sprintf("%s:%d: %s is %d lines", path, start.Line, fn.Name.Name, n))
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
