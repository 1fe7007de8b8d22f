// Package pull is the pull engine: it fetches the server's changes after
// the device's cursor, page by page, and applies each page in one local
// transaction together with the cursor after it (G5). Memory is bounded by
// the page size, whatever the size of the sync (G10).
package pull
