import Logging
import StatusCodes
import SystemCalls

/// Many channels over one byte stream (vsock or virtio-serial), each with its own credit-based flow
/// control: a reader that stops reading stalls only its own channel, and never makes the mux buffer
/// more than `MuxWire.initialWindow` bytes for it.
///
/// One thread reads the stream and only ever buffers and signals, so it never blocks on a consumer;
/// writers share one lock per frame.
public final class Mux: @unchecked Sendable {
    public enum Role: Sendable {
        /// Opens odd channel ids.
        case host
        /// Opens even channel ids.
        case guest
    }

    /// Channels the peer opened that nobody has accepted yet, at most: each may buffer a window.
    public static let maxUnaccepted = 64
    /// Live channels at once; beyond this the peer is misbehaving.
    public static let maxChannels = 4096

    let stream: any ByteStream
    let role: Role
    let logger: Logger
    private let writeLock = NSLockLite()
    // Guards everything below; accept() waits on it.
    let state = Condition()
    private var channels: [UInt32: MuxChannel] = [:]
    private var unaccepted: [MuxChannel] = []
    private var nextLocalID: UInt32
    private var highestRemoteID: UInt32 = 0
    private(set) var closedReason: MuxError?

    public init(stream: any ByteStream, role: Role, logger: Logger) throws(MuxError) {
        self.stream = stream
        self.role = role
        self.logger = logger
        self.nextLocalID = role == .host ? 1 : 2
        do {
            try startDetachedThread { [self] in readLoop() }
        } catch {
            throw MuxError(.resourceExhausted, "cannot start the mux reader thread: \(error)")
        }
    }

    /// Why the mux ended, or nil while it runs.
    public var failure: MuxError? { state.withLock { closedReason } }

    /// Blocks until the mux ends or the deadline passes; returns the reason, or nil on timeout.
    public func waitUntilClosed(until deadline: Deadline?) -> MuxError? {
        state.withLock {
            while closedReason == nil && state.wait(until: deadline) {}
            return closedReason
        }
    }

    /// Opens a channel; the peer finds it by name with `accept(named:)`.
    public func open(_ name: String) throws(MuxError) -> MuxChannel {
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes.count <= MuxWire.maxNameLength else {
            throw MuxError(.invalidArgument, "mux channel name must be 1 to \(MuxWire.maxNameLength) bytes, is \(nameBytes.count)")
        }
        // Id allocation and the open frame go out under the write lock, so ids increase on the wire.
        writeLock.lock()
        defer { writeLock.unlock() }
        let channel = try state.withLock { () throws(MuxError) -> MuxChannel in
            if let closedReason { throw closedReason }
            guard channels.count < Self.maxChannels else {
                throw MuxError(.resourceExhausted, "more than \(Self.maxChannels) mux channels open")
            }
            guard nextLocalID < UInt32.max - 2 else { throw MuxError(.resourceExhausted, "mux channel ids exhausted") }
            let channel = MuxChannel(id: nextLocalID, name: name, mux: self)
            nextLocalID += 2
            channels[channel.id] = channel
            return channel
        }
        try writeLocked(MuxWire.header(channel: channel.id, kind: .open, length: nameBytes.count) + nameBytes)
        return channel
    }

    /// The next channel the peer opened with this name, in the order opened.
    public func accept(named name: String, until deadline: Deadline?) throws(MuxError) -> MuxChannel {
        state.lock()
        defer { state.unlock() }
        while true {
            if let i = unaccepted.firstIndex(where: { $0.name == name }) {
                return unaccepted.remove(at: i)
            }
            if let closedReason { throw closedReason }
            if !state.wait(until: deadline) {
                throw MuxError(.deadlineExceeded, "no mux channel named '\(name)' opened before the deadline")
            }
        }
    }

    /// The next channel the peer opened, whatever its name (a proxy that forwards every channel).
    public func acceptAny(until deadline: Deadline?) throws(MuxError) -> MuxChannel {
        state.lock()
        defer { state.unlock() }
        while true {
            if !unaccepted.isEmpty { return unaccepted.removeFirst() }
            if let closedReason { throw closedReason }
            if !state.wait(until: deadline) {
                throw MuxError(.deadlineExceeded, "no mux channel opened before the deadline")
            }
        }
    }

    /// Ends the mux: every channel fails with Unavailable and the stream is closed.
    public func close(reason: String = "mux closed") {
        shutDown(MuxError(.unavailable, reason))
    }

    // MARK: - Internals used by channels

    func send(_ frame: [UInt8]) throws(MuxError) {
        writeLock.lock()
        defer { writeLock.unlock() }
        try writeLocked(frame)
    }

    /// A data frame: the payload goes out without being copied into a frame buffer.
    func send(header: [UInt8], payload: ArraySlice<UInt8>) throws(MuxError) {
        writeLock.lock()
        defer { writeLock.unlock() }
        if let reason = failure { throw reason }
        do {
            try stream.write(header, payload)
        } catch {
            let reason = MuxError(.unavailable, "mux stream write failed: \(error)")
            shutDown(reason)
            throw reason
        }
    }

    private func writeLocked(_ frame: [UInt8]) throws(MuxError) {
        if let reason = failure { throw reason }
        do {
            try stream.write(frame)
        } catch {
            let reason = MuxError(.unavailable, "mux stream write failed: \(error)")
            shutDown(reason)
            throw reason
        }
    }

    /// Forgets a finished channel; later frames for it are stale and dropped.
    func remove(_ channel: MuxChannel) {
        state.withLock { _ = channels.removeValue(forKey: channel.id) }
    }

    private func shutDown(_ reason: MuxError) {
        let (first, all): (Bool, [MuxChannel]) = state.withLock {
            guard closedReason == nil else { return (false, []) }
            closedReason = reason
            state.broadcast()
            let all = Array(channels.values) + unaccepted
            channels.removeAll()
            unaccepted.removeAll()
            return (true, all)
        }
        guard first else { return }
        for channel in all { channel.muxEnded(reason) }
        stream.close()
    }

    // MARK: - Reading

    private func readLoop() {
        var reader = BufferedReader(stream)
        do throws(MuxError) {
            while true {
                guard let header = try reader.read(MuxWire.headerSize, atFrameStart: true) else {
                    shutDown(MuxError(.unavailable, "mux stream closed by the peer"))
                    return
                }
                let id = MuxWire.u32(header[0..<4])
                let length = Int(MuxWire.u32(header[6..<10]))
                guard let kind = MuxWire.Kind(rawValue: header[4]) else {
                    throw violation("unknown frame kind \(header[4]) on channel \(id)")
                }
                guard header[5] == 0 else { throw violation("flags \(header[5]) set on a \(kind) frame") }
                guard length <= MuxWire.maxPayload(kind) else {
                    throw violation("\(kind) frame of \(length) bytes on channel \(id) (at most \(MuxWire.maxPayload(kind)))")
                }
                let payload: [UInt8] = length == 0 ? [] : (try reader.read(length, atFrameStart: false) ?? [])
                try dispatch(id: id, kind: kind, payload: payload)
            }
        } catch {
            logger.error("mux connection closed: \(error.message)")
            shutDown(error)
        }
    }

    private func violation(_ what: String) -> MuxError {
        MuxError(.dataLoss, "mux protocol violation: \(what)")
    }

    private func isRemoteID(_ id: UInt32) -> Bool { (id % 2 == 1) == (role == .guest) }

    private func dispatch(id: UInt32, kind: MuxWire.Kind, payload: [UInt8]) throws(MuxError) {
        guard id != 0 else { throw violation("channel id 0") }
        if kind == .open {
            guard isRemoteID(id) else { throw violation("peer opened channel \(id) with our parity") }
            guard let name = String(validating: payload, as: UTF8.self), !name.isEmpty else {
                throw violation("open of channel \(id) without a valid UTF-8 name")
            }
            try state.withLock { () throws(MuxError) in
                guard id > highestRemoteID else { throw violation("channel id \(id) reused or not increasing") }
                guard channels.count < Self.maxChannels else { throw violation("more than \(Self.maxChannels) channels") }
                guard unaccepted.count < Self.maxUnaccepted else {
                    throw violation("more than \(Self.maxUnaccepted) channels opened and not accepted")
                }
                highestRemoteID = id
                let channel = MuxChannel(id: id, name: name, mux: self)
                channels[id] = channel
                unaccepted.append(channel)
                state.broadcast()
            }
            return
        }
        let found: MuxChannel? = try state.withLock { () throws(MuxError) -> MuxChannel? in
            if let c = channels[id] { return c }
            // A channel that ended here may still get frames the peer sent before it learnt that.
            let known = isRemoteID(id) ? id <= highestRemoteID : id < nextLocalID
            guard known else { throw violation("\(kind) frame for channel \(id), which was never opened") }
            return nil
        }
        guard let channel = found else { return }
        switch kind {
        case .data:
            try channel.received(payload)
        case .window:
            guard payload.count == 4 else { throw violation("window frame of \(payload.count) bytes") }
            try channel.credited(Int(MuxWire.u32(payload[0..<4])))
        case .close:
            channel.remoteClosed()
        case .reset:
            channel.remoteReset(String(decoding: payload, as: UTF8.self))
        case .open:
            break
        }
    }
}

/// Exact reads over a ByteStream, with one bounded buffer.
struct BufferedReader {
    let stream: any ByteStream
    var buffer: [UInt8] = []
    var start = 0

    init(_ stream: any ByteStream) { self.stream = stream }

    /// Nil at a clean end of stream before the first byte of a frame.
    mutating func read(_ count: Int, atFrameStart: Bool) throws(MuxError) -> [UInt8]? {
        while buffer.count - start < count {
            if start > 0 {
                buffer.removeSubrange(0..<start)
                start = 0
            }
            let more: [UInt8]
            do {
                more = try stream.read(upTo: 128 * 1024)
            } catch {
                throw MuxError(.unavailable, "mux stream read failed: \(error)")
            }
            if more.isEmpty {
                if atFrameStart && buffer.isEmpty { return nil }
                throw MuxError(.dataLoss, "mux stream ended in the middle of a frame")
            }
            buffer += more
        }
        let out = Array(buffer[start..<start + count])
        start += count
        return out
    }
}
