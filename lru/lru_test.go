package lru

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLRUForgetsTheLeastRecentlyUsed(t *testing.T) {
	c := New[string, int](2)
	c.Add("a", 1)
	c.Add("b", 2)
	_, _ = c.Get("a") // a is now the most recently used: b goes first
	c.Add("c", 3)
	_, ok := c.Get("b")
	assert.False(t, ok, "the least recently used is forgotten")
	for key, want := range map[string]int{"a": 1, "c": 3} {
		got, ok := c.Get(key)
		assert.True(t, ok, key)
		assert.Equal(t, want, got, key)
	}
	assert.Equal(t, 2, c.Len())
}

func TestLRUAddKeepsTheFirstValue(t *testing.T) {
	c := New[string, int](2)
	assert.Equal(t, 1, c.Add("a", 1))
	assert.Equal(t, 1, c.Add("a", 2), "two callers that compiled the same key share the first value")
	assert.Equal(t, 1, c.Len())
}

func TestLRUSizeIsAtLeastOne(t *testing.T) {
	c := New[string, int](0)
	c.Add("a", 1)
	c.Add("b", 2)
	assert.Equal(t, 1, c.Len())
	got, ok := c.Get("b")
	assert.True(t, ok)
	assert.Equal(t, 2, got)
}

// TestLRUConcurrent runs gets and adds from many goroutines (run it with -race): the bound holds
// and every value read is the one added under its key.
func TestLRUConcurrent(t *testing.T) {
	const size, keys, workers = 16, 64, 8
	c := New[string, string](size)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := fmt.Sprint((i * (w + 1)) % keys)
				if v, ok := c.Get(key); ok {
					if v != "v"+key {
						t.Errorf("key %s holds %q", key, v)
					}
					continue
				}
				if v := c.Add(key, "v"+key); v != "v"+key {
					t.Errorf("key %s holds %q", key, v)
				}
				if n := c.Len(); n > size {
					t.Errorf("%d values cached, bound %d", n, size)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, size, c.Len())
}

func TestLRUSetReplaces(t *testing.T) {
	c := New[string, int](2)
	c.Set("a", 1)
	c.Set("a", 2)
	got, _ := c.Get("a")
	assert.Equal(t, 2, got)
	c.Set("b", 3)
	c.Set("c", 4)
	_, ok := c.Get("a")
	assert.False(t, ok, "bounded as Add is")
}
