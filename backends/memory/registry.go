package memory

import "sync"

// registry holds the stores shared by every limiter with the same plugin
// name and configuration (docs/semantics.md §10).
var registry = struct {
	sync.Mutex
	stores map[registryKey]*Store
}{stores: map[registryKey]*Store{}}

type registryKey struct{ name, config string }

// Shared returns the process-wide store of the plugin name and configuration
// (any string that identifies it, e.g. canonical JSON), creating it with room
// for maxKeys keys on first use. Later calls ignore maxKeys, which is part of
// the configuration anyway.
func Shared(name, config string, maxKeys int) *Store {
	registry.Lock()
	defer registry.Unlock()
	k := registryKey{name, config}
	s, ok := registry.stores[k]
	if !ok {
		s = New(maxKeys)
		registry.stores[k] = s
	}
	return s
}

// ResetShared forgets every shared store, so that tests start from empty
// state. Limiters still holding a store keep using it.
func ResetShared() {
	registry.Lock()
	defer registry.Unlock()
	registry.stores = map[registryKey]*Store{}
}
