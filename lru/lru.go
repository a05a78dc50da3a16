package lru

import (
	"container/list"
	"sync"
)

// Cache caches at most size values by key; to make room it forgets the least recently used. It is
// safe for concurrent use: one mutex guards the map and the order, and both a hit (which moves
// the entry to the front) and an add take it.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *lruEntry[K, V], the most recently used first
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key   K
	value V
}

// New returns an empty cache of at most size values (at least one).
func New[K comparable, V any](size int) *Cache[K, V] {
	return &Cache[K, V]{size: max(size, 1), order: list.New(), items: map[K]*list.Element{}}
}

// Get returns the value cached under key and makes it the most recently used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry[K, V]).value, true
}

// Add caches value under key as the most recently used, forgetting the least recently used
// value if the cache is full, and returns the value now cached under key: if another caller
// added one first (both compiled the same expression at once), that one is kept and returned, so
// that every caller shares it.
func (c *Cache[K, V]) Add(key K, value V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[K, V]).value
	}
	c.insert(key, value)
	return value
}

// Set caches value under key as the most recently used, replacing a value cached there.
func (c *Cache[K, V]) Set(key K, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*lruEntry[K, V]).value = value
		c.order.MoveToFront(el)
		return
	}
	c.insert(key, value)
}

// insert adds a new key as the most recently used, forgetting the least recently used if full.
// The caller holds the lock.
func (c *Cache[K, V]) insert(key K, value V) {
	c.items[key] = c.order.PushFront(&lruEntry[K, V]{key: key, value: value})
	if c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruEntry[K, V]).key)
	}
}

// Len is the number of values cached.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
