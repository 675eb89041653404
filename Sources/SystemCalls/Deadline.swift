#if canImport(Glibc)
import Glibc
#endif

/// A point on the monotonic clock. Every wait in cocoon takes one, so nothing waits forever.
public struct Deadline: Sendable, Comparable {
    public let nanoseconds: UInt64

    public static func now() -> Deadline { Deadline(nanoseconds: monotonicNanoseconds()) }

    public static func after(seconds: Double) -> Deadline {
        let delta = seconds <= 0 ? 0 : UInt64(seconds * 1e9)
        return Deadline(nanoseconds: monotonicNanoseconds() &+ delta)
    }

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// Milliseconds left, clamped to what poll() takes; 0 once passed.
    public var remainingMilliseconds: Int32 {
        let now = Self.monotonicNanoseconds()
        guard nanoseconds > now else { return 0 }
        return Int32(clamping: (nanoseconds - now + 999_999) / 1_000_000)
    }

    public var remainingSeconds: Double {
        let now = Self.monotonicNanoseconds()
        return nanoseconds > now ? Double(nanoseconds - now) / 1e9 : 0
    }

    public var hasPassed: Bool { Self.monotonicNanoseconds() >= nanoseconds }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Seconds elapsed since a monotonic start, for timings.
public struct Stopwatch: Sendable {
    public let start = Deadline.monotonicNanoseconds()
    public init() {}
    public var elapsedSeconds: Double { Double(Deadline.monotonicNanoseconds() - start) / 1e9 }
}

public func sleep(seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
