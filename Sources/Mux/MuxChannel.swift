import StatusCodes
import SystemCalls

/// One channel of a mux: a ByteStream with its own flow control.
public final class MuxChannel: ByteStream, @unchecked Sendable {
    public let id: UInt32
    public let name: String
    /// Strong: a channel may outlive every other reference to its mux (a server thread still
    /// answering on it). The cycle through the mux table breaks when the channel finishes or the mux ends.
    let mux: Mux

    // Guards everything below; readers wait for data, writers for credit.
    private let state = Condition()
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var buffered = 0
    /// Bytes the peer may still send before we grant more.
    private var receiveWindow = MuxWire.initialWindow
    /// Bytes consumed here and not yet granted back.
    private var ungranted = 0
    /// Bytes we may still send.
    private var sendCredit = MuxWire.initialWindow
    private var remoteDone = false
    private var localDone = false
    private var failure: MuxError?

    /// How long a write waits for the peer to grant credit; nil waits until the channel or mux ends.
    public var writeTimeout: Double? {
        get { state.withLock { _writeTimeout } }
        set { state.withLock { _writeTimeout = newValue } }
    }
    private var _writeTimeout: Double?

    init(id: UInt32, name: String, mux: Mux) {
        self.id = id
        self.name = name
        self.mux = mux
    }

    /// Bytes buffered for the reader (never more than the initial window).
    public var bufferedCount: Int { state.withLock { buffered } }

    // MARK: ByteStream

    public func read(upTo count: Int) throws -> [UInt8] {
        try readBytes(upTo: count, until: nil)
    }

    /// Reads what is buffered (at most `count`), waiting for data, EOF or the deadline.
    public func readBytes(upTo count: Int, until deadline: Deadline?) throws(MuxError) -> [UInt8] {
        let (bytes, grant): ([UInt8], Int) = try state.withLock { () throws(MuxError) -> ([UInt8], Int) in
            while buffered == 0 {
                if let failure { throw failure }
                if remoteDone { return ([], 0) }
                if !state.wait(until: deadline) {
                    throw MuxError(.deadlineExceeded, "no data on mux channel '\(name)' before the deadline")
                }
            }
            var out: [UInt8] = []
            out.reserveCapacity(min(count, buffered))
            while out.count < count && head < chunks.count {
                let chunk = chunks[head]
                let take = min(count - out.count, chunk.count)
                out += chunk[0..<take]
                if take == chunk.count {
                    head += 1
                } else {
                    chunks[head] = Array(chunk[take...])
                }
            }
            if head == chunks.count {
                chunks.removeAll(keepingCapacity: true)
                head = 0
            }
            buffered -= out.count
            ungranted += out.count
            // Grant credit back in batches, not per read; see MuxWire for why this cannot deadlock.
            guard ungranted >= MuxWire.initialWindow / 4, !remoteDone else { return (out, 0) }
            let grant = ungranted
            ungranted = 0
            receiveWindow += grant
            return (out, grant)
        }
        if grant > 0 {
            try? mux.send(MuxWire.header(channel: id, kind: .window, length: 4) + MuxWire.bytes(UInt32(grant)))
        }
        return bytes
    }

    public func write(_ bytes: [UInt8]) throws {
        try writeBytes(bytes)
    }

    /// Sends all bytes, in frames no larger than the peer's credit allows.
    public func writeBytes(_ bytes: [UInt8]) throws(MuxError) {
        var offset = 0
        while offset < bytes.count {
            let n = try takeCredit(upTo: min(bytes.count - offset, MuxWire.maxData))
            try mux.send(header: MuxWire.header(channel: id, kind: .data, length: n), payload: bytes[offset..<offset + n])
            offset += n
        }
    }

    private func takeCredit(upTo wanted: Int) throws(MuxError) -> Int {
        state.lock()
        defer { state.unlock() }
        let deadline = _writeTimeout.map { Deadline.after(seconds: $0) }
        while true {
            if let failure { throw failure }
            if localDone { throw MuxError(.failedPrecondition, "write on mux channel '\(name)' after it was closed") }
            if sendCredit > 0 {
                let n = min(wanted, sendCredit)
                sendCredit -= n
                return n
            }
            if !state.wait(until: deadline) {
                throw MuxError(.deadlineExceeded, "the peer of mux channel '\(name)' did not read for \(_writeTimeout ?? 0) s")
            }
        }
    }

    public func closeWrite() {
        let send: Bool = state.withLock {
            guard !localDone, failure == nil else { return false }
            localDone = true
            state.broadcast()
            return true
        }
        guard send else { return }
        try? mux.send(MuxWire.header(channel: id, kind: .close, length: 0))
        removeIfFinished()
    }

    /// Done with the channel. When data may still come either way, the peer is told by a reset.
    public func close() {
        let needsReset: Bool = state.withLock {
            guard failure == nil else { return false }
            let clean = localDone && remoteDone
            localDone = true
            remoteDone = true
            chunks.removeAll()
            buffered = 0
            if !clean { failure = MuxError(.aborted, "mux channel '\(name)' closed") }
            state.broadcast()
            return !clean
        }
        if needsReset { sendReset("closed by its reader") }
        mux.remove(self)
    }

    /// Gives up on the channel and tells the peer why.
    public func reset(reason: String) {
        let first: Bool = state.withLock {
            guard failure == nil else { return false }
            failure = MuxError(.aborted, "mux channel '\(name)' reset: \(reason)")
            state.broadcast()
            return true
        }
        if first { sendReset(reason) }
        mux.remove(self)
    }

    private func sendReset(_ reason: String) {
        let bytes = Array(reason.utf8.prefix(MuxWire.maxNameLength))
        try? mux.send(MuxWire.header(channel: id, kind: .reset, length: bytes.count) + bytes)
    }

    private func removeIfFinished() {
        if state.withLock({ localDone && remoteDone }) { mux.remove(self) }
    }

    // MARK: Called by the mux's reader thread; never blocks.

    func received(_ bytes: [UInt8]) throws(MuxError) {
        guard !bytes.isEmpty else { return }
        try state.withLock { () throws(MuxError) in
            if failure != nil { return }  // reset here; the peer has not seen it yet
            guard !remoteDone else {
                throw MuxError(.dataLoss, "mux protocol violation: data on channel \(id) after its close")
            }
            guard bytes.count <= receiveWindow else {
                throw MuxError(.dataLoss, "mux protocol violation: \(bytes.count) bytes on channel \(id) with \(receiveWindow) of credit")
            }
            receiveWindow -= bytes.count
            chunks.append(bytes)
            buffered += bytes.count
            state.broadcast()
        }
    }

    func credited(_ increment: Int) throws(MuxError) {
        try state.withLock { () throws(MuxError) in
            guard sendCredit + increment <= Int(Int32.max) else {
                throw MuxError(.dataLoss, "mux protocol violation: credit on channel \(id) overflows")
            }
            sendCredit += increment
            state.broadcast()
        }
    }

    func remoteClosed() {
        state.withLock {
            remoteDone = true
            state.broadcast()
        }
        removeIfFinished()
    }

    func remoteReset(_ reason: String) {
        state.withLock {
            if failure == nil { failure = MuxError(.aborted, "mux channel '\(name)' reset by the peer: \(reason)") }
            chunks.removeAll()
            buffered = 0
            state.broadcast()
        }
        mux.remove(self)
    }

    func muxEnded(_ reason: MuxError) {
        state.withLock {
            if failure == nil { failure = reason }
            state.broadcast()
        }
    }
}
