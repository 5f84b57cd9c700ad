package jointoken

import (
	"strings"
	"testing"
)

func TestProof(t *testing.T) {
	tok, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if !WellFormed(tok) || !ValidID(ID(tok)) {
		t.Fatalf("New made %q (id %q), which is not well formed", tok, ID(tok))
	}
	other, _ := New()
	csr := []byte("csr-of-the-drone")
	proof := Prove(tok, csr)
	pub := PublicKey(tok)
	if !Verify(pub, csr, proof) {
		t.Fatal("a proof does not verify")
	}
	for name, ok := range map[string]bool{
		"another CSR":         Verify(pub, []byte("csr-of-the-frontgate"), proof),
		"another token's key": Verify(PublicKey(other), csr, proof),
		"another token":       Verify(pub, csr, Prove(other, csr)),
		"truncated proof":     Verify(pub, csr, proof[:10]),
		"no key":              Verify(nil, csr, proof),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}
	if strings.Contains(ID(tok), tok) || ID(tok) == ID(other) {
		t.Error("IDs reveal or confuse tokens")
	}
}

func TestWellFormed(t *testing.T) {
	for _, tok := range []string{"", "hjt_", "hjt_" + strings.Repeat("A", 42), "hgt_" + strings.Repeat("A", 43), "hjt_" + strings.Repeat("*", 43)} {
		if WellFormed(tok) {
			t.Errorf("%q is well formed", tok)
		}
	}
	for _, id := range []string{"", strings.Repeat("g", 64), strings.Repeat("A", 64), strings.Repeat("a", 63)} {
		if ValidID(id) {
			t.Errorf("id %q is valid", id)
		}
	}
}
