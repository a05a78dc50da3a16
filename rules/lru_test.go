package rules

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLRUForgetsTheLeastRecentlyUsed(t *testing.T) {
	c := newLRU[string, int](2)
	c.add("a", 1)
	c.add("b", 2)
	_, _ = c.get("a") // a is now the most recently used: b goes first
	c.add("c", 3)
	_, ok := c.get("b")
	assert.False(t, ok, "the least recently used is forgotten")
	for key, want := range map[string]int{"a": 1, "c": 3} {
		got, ok := c.get(key)
		assert.True(t, ok, key)
		assert.Equal(t, want, got, key)
	}
	assert.Equal(t, 2, c.len())
}

func TestLRUAddKeepsTheFirstValue(t *testing.T) {
	c := newLRU[string, int](2)
	assert.Equal(t, 1, c.add("a", 1))
	assert.Equal(t, 1, c.add("a", 2), "two callers that compiled the same key share the first value")
	assert.Equal(t, 1, c.len())
}

func TestLRUSizeIsAtLeastOne(t *testing.T) {
	c := newLRU[string, int](0)
	c.add("a", 1)
	c.add("b", 2)
	assert.Equal(t, 1, c.len())
	got, ok := c.get("b")
	assert.True(t, ok)
	assert.Equal(t, 2, got)
}

// TestLRUConcurrent runs gets and adds from many goroutines (run it with -race): the bound holds
// and every value read is the one added under its key.
func TestLRUConcurrent(t *testing.T) {
	const size, keys, workers = 16, 64, 8
	c := newLRU[string, string](size)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := fmt.Sprint((i * (w + 1)) % keys)
				if v, ok := c.get(key); ok {
					if v != "v"+key {
						t.Errorf("key %s holds %q", key, v)
					}
					continue
				}
				if v := c.add(key, "v"+key); v != "v"+key {
					t.Errorf("key %s holds %q", key, v)
				}
				if n := c.len(); n > size {
					t.Errorf("%d values cached, bound %d", n, size)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, size, c.len())
}
