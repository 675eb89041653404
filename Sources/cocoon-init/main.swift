#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LinuxContainer

// The container's first process until it execs the user's program (see InitProcess). A binary of
// its own, static and without Foundation, because it starts once per container: 1 ms instead of 15.
InitProcess.main(environment: ProcessInfo.processInfo.environment)
