package transfer

// What the tests of package transfer_test (which start whole servers, and
// so import authority) need of this package's insides.

var (
	DiffRecords = diffRecords
	Rewind      = rewind
	WithSerial  = withSerial
)
