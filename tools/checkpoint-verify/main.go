// checkpoint-verify: an outside check of gridledger's final checkpoints, with Go's own
// signed-note verifier (golang.org/x/mod/sumdb/note, the one the Go checksum database
// uses), not gridledger's code.
//
//	checkpoint-verify VKEY... < checkpoint.note
//
// Each VKEY is a member's verifier key as GET /members lists it (name+hash+base64). Exits 0
// and prints the number of verified member signatures, then their key names, then the
// note's text, if the note verifies; 1 with the reason if it does not (a known key's
// signature that fails refuses the whole note); 2 on a bad verifier key.
//
// Build (Debian's golang-go and golang-golang-x-mod-dev, no network):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o checkpoint-verify tools/checkpoint-verify/main.go
package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	msg, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading the note:", err)
		os.Exit(2)
	}
	var verifiers []note.Verifier
	for _, vkey := range os.Args[1:] {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			fmt.Fprintf(os.Stderr, "verifier key %q: %v\n", vkey, err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "refused:", err)
		os.Exit(1)
	}
	fmt.Println(len(n.Sigs))
	for _, s := range n.Sigs {
		fmt.Println(s.Name)
	}
	fmt.Print(n.Text)
}
