package revledger

/*
#include "revledger.h"
*/
import "C"

import "fmt"

// PackageVersion is the version of this Go package: the version of the revledger C
// library and crate it was released with (one version for the crate, the C header,
// revledger.pc and the Python and Go packages). Version reports the library actually
// linked, HeaderVersion the header compiled against.
const PackageVersion = "0.1.0"

// HeaderVersion is the version of the C header this package was compiled against
// (REVLEDGER_VERSION_MAJOR/MINOR/PATCH of revledger.h).
func HeaderVersion() string {
	return fmt.Sprintf("%d.%d.%d", C.REVLEDGER_VERSION_MAJOR, C.REVLEDGER_VERSION_MINOR,
		C.REVLEDGER_VERSION_PATCH)
}
