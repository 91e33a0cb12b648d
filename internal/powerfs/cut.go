package powerfs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// Report describes what a power cut kept and lost.
type Report struct {
	// Files is the number of files that survived (one per surviving name).
	Files int
	// UnsyncedOps is the number of changes to the surviving files' contents
	// (writes, truncates, fallocates) made since their last fsync.
	UnsyncedOps int
	// DroppedOps is the number of those changes that were lost: all of them
	// in Strict mode.
	DroppedOps int
	// TornOps is the number of writes that were kept only in part (Torn mode).
	TornOps int
	// LostEntries is the number of folder changes (a name added, removed
	// or pointed at another file or folder) not made durable by an fsync
	// of their folder, and undone (not kept by KeepUnsyncedNames).
	LostEntries int
	// KeptNames is the number of requests (a create, a rename, ...) whose
	// folder changes survived without an fsync of their folder: the
	// first KeptNames of them (Options.KeepUnsyncedNames).
	KeptNames int
	// Pending names, by path from the root and sorted, what was not
	// durable at the cut, so that a test can tell which operation the cut
	// fell inside: each file whose contents had changes since its last
	// sync ("data/ctxd.db"), and each folder entry the folder's last fsync
	// did not cover, "+path" when added (or pointed at another file or
	// folder) and "-path" when removed, kept by KeepUnsyncedNames or not.
	Pending []string
	// Cut is set in the answer to FS.PowerCut when the power is cut.
	Cut bool `json:",omitempty"`
}

// String is the report on one line.
func (r Report) String() string {
	s := fmt.Sprintf("power cut: %d files survived, %d unsynced operations (%d dropped, %d torn), %d folder entries lost",
		r.Files, r.UnsyncedOps, r.DroppedOps, r.TornOps, r.LostEntries)
	if r.KeptNames > 0 {
		s += fmt.Sprintf(", %d unsynced folder changes kept", r.KeptNames)
	}
	return s
}

// survivor is a file or folder that survived the power cut.
type survivor struct {
	name string
	mode uint32
	data *contents   // files
	kids []*survivor // folders, sorted by name
}

// cutPower cuts the power (see FS.Cut), unless Options.CutAfter already
// did, and returns the report.
func (s *fsys) cutPower() (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reported {
		return Report{}, errors.New("powerfs: the power was already cut")
	}
	if !s.cut {
		s.cutLocked()
	}
	s.reported = true
	return s.report, nil
}

// isCut reports whether the power is cut.
func (s *fsys) isCut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut
}

// cutOn arms t (FS.CutOn).
func (s *fsys) cutOn(t *Trigger) error {
	if t == nil || t.Count < 1 {
		return fmt.Errorf("powerfs: cut on %v: no request named", t)
	}
	if _, err := path.Match(t.Name, ""); err != nil {
		return fmt.Errorf("powerfs: cut on %v: %w", t, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trigger, s.triggered = t, 0
	return nil
}

// applied counts a request applied to the file or folder n under name
// (locked): the power is cut when it is the armed trigger's (FS.CutOn).
func (s *fsys) applied(op string, n *inode, name string) {
	t := s.trigger
	if t == nil || s.cut || op != t.Op || t.Fail {
		return
	}
	if name == "" {
		name = n.name
	}
	if ok, _ := path.Match(t.Name, name); !ok {
		return
	}
	s.triggered++
	if s.triggered == t.Count {
		s.cutLocked()
	}
}

// failing reports whether the fsync of n is the one an armed FailOn
// trigger names (locked), counting it.
func (s *fsys) failing(n *inode) bool {
	t := s.trigger
	if t == nil || !t.Fail || t.Op != OpFsync {
		return false
	}
	if ok, _ := path.Match(t.Name, n.name); !ok {
		return false
	}
	s.triggered++
	return s.triggered == t.Count
}

// surviving returns the surviving tree, nil before the power cut.
func (s *fsys) surviving() *survivor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.survivors
}

// cutLocked freezes the file system and computes what survives (locked).
func (s *fsys) cutLocked() {
	s.cut = true
	c := cutter{
		mode:  s.opts.Mode,
		rng:   rand.New(rand.NewPCG(uint64(s.opts.Seed), 0x706f7765726673)),
		files: make(map[*inode]*contents),
		seen:  make(map[*inode]bool),
	}
	// Pending is what the fsyncs left unsynced, whether or not it survives.
	c.rep.Pending = pending(s.root, "")
	c.keepNames(s.names)
	s.survivors = c.dir("", s.root)
	for _, n := range s.inodes {
		if n.isDir() && n.links > 0 {
			c.rep.LostEntries += lostEntries(n)
		}
	}
	s.report = c.rep
}

// pending lists what is not durable in folder d, at path p, and below it
// (see Report.Pending): the current tree, in name order.
func pending(d *inode, p string) []string {
	var out []string
	join := func(name string) string {
		if p == "" {
			return name
		}
		return p + "/" + name
	}
	for _, name := range sortedNames(d.entries) {
		e := d.entries[name]
		if d.durEntries[name] != e {
			out = append(out, "+"+join(name))
		}
		switch {
		case e.isDir() && e != d:
			out = append(out, pending(e, join(name))...)
		case !e.isDir() && len(e.ops) > 0:
			out = append(out, join(name))
		}
	}
	for _, name := range sortedNames(d.durEntries) {
		if _, ok := d.entries[name]; !ok {
			out = append(out, "-"+join(name))
		}
	}
	slices.Sort(out)
	return out
}

// lostEntries counts the names of folder d whose current and durable
// entries differ.
func lostEntries(d *inode) int {
	lost := 0
	for name, c := range d.entries {
		if d.durEntries[name] != c {
			lost++
		}
	}
	for name := range d.durEntries {
		if _, ok := d.entries[name]; !ok {
			lost++
		}
	}
	return lost
}

type cutter struct {
	mode  Mode
	rng   *rand.Rand
	rep   Report
	files map[*inode]*contents // each file's fate is drawn once, whatever its names
	seen  map[*inode]bool      // folders already placed
}

// keepNames makes a random prefix of log durable (Options.KeepUnsyncedNames;
// the log is empty otherwise): it writes those changes into their folders'
// durable entries, which hold what survives from now on.
func (c *cutter) keepNames(log []nameChange) {
	if len(log) == 0 {
		return
	}
	k := c.rng.IntN(len(log) + 1)
	for _, req := range log[:k] {
		for _, e := range req {
			if e.to == nil {
				delete(e.dir.durEntries, e.name)
			} else {
				e.dir.durEntries[e.name] = e.to
			}
		}
	}
	c.rep.KeptNames = k
}

// dir is the surviving folder d: its durable entries, recursively, in name
// order so that a seed always gives the same outcome.
func (c *cutter) dir(name string, d *inode) *survivor {
	c.seen[d] = true
	out := &survivor{name: name, mode: d.mode}
	for _, n := range sortedNames(d.durEntries) {
		e := d.durEntries[n]
		switch {
		case e.isDir() && c.seen[e]:
			// A folder durable under two names (or inside itself), after
			// renames synced in one folder and not the other: keep the
			// first.
			c.rep.LostEntries++
		case e.isDir():
			out.kids = append(out.kids, c.dir(n, e))
		default:
			out.kids = append(out.kids, &survivor{name: n, mode: e.mode, data: c.file(e)})
			c.rep.Files++
		}
	}
	return out
}

// file is the surviving contents of file n.
func (c *cutter) file(n *inode) *contents {
	if data, ok := c.files[n]; ok {
		return data
	}
	data := n.dur.share()
	c.rep.UnsyncedOps += len(n.ops)
	if c.mode == Torn {
		replay(&data, n.ops, c.rng, &c.rep)
	} else {
		c.rep.DroppedOps += len(n.ops)
	}
	c.files[n] = &data
	return &data
}

// writeSurvivors writes the surviving tree root into dir (see
// FS.WriteSurvivors).
func writeSurvivors(root *survivor, dir string) error {
	if root == nil {
		return errors.New("powerfs: WriteSurvivors before Cut")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("powerfs: write survivors: %w", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		return fmt.Errorf("powerfs: write survivors: %s is not an empty folder (%v)", dir, err)
	}
	return writeKids(dir, root)
}

func writeKids(dir string, d *survivor) error {
	for _, k := range d.kids {
		p := filepath.Join(dir, k.name)
		perm := os.FileMode(k.mode & 0o777)
		if k.data == nil {
			if err := os.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("powerfs: write survivors: %w", err)
			}
			if err := writeKids(p, k); err != nil {
				return err
			}
		} else if err := writeFile(p, k.data); err != nil {
			return fmt.Errorf("powerfs: write survivors: %w", err)
		}
		if err := os.Chmod(p, perm); err != nil {
			return fmt.Errorf("powerfs: write survivors: %w", err)
		}
	}
	return nil
}

// writeFile writes c to a new file at p, leaving holes where c has them.
func writeFile(p string, c *contents) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(c.size)
	for i, pg := range c.pages {
		if err != nil || int64(i)*pageSize >= c.size {
			break
		}
		if pg != nil && pg != zeroPage {
			_, err = f.WriteAt(pg[:min(pageSize, c.size-int64(i)*pageSize)], int64(i)*pageSize)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
