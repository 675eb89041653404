import AgentAPI
import CSupport
import Logging
import Mux
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// One guest process's stdio: pipes (or a pty) on the process side, mux channels on the host side,
/// and a thread per direction copying between them.
///
/// The host opens the channels before the request that names them, so they are accepted here
/// before the process starts. Output is drained before the exit is reported (see `finish`).
final class ProcessStdio: @unchecked Sendable {
    let terminal: Bool
    private let stdin: MuxChannel?
    private let stdout: MuxChannel?
    private let stderr: MuxChannel?
    private let logger: Logger

    /// Descriptors the child gets as 0, 1, 2 (pipe ends or /dev/null), closed here after the spawn.
    private(set) var childDescriptors: [FileDescriptor] = []
    /// Our ends: where stdin goes in, where stdout and stderr come out.
    private var stdinWriter: FileDescriptor?
    private var outputReaders: [(FileDescriptor, MuxChannel?)] = []
    /// With a terminal: our end of the console socket pair, the child's end, then the pty master.
    private var consoleOurs: FileDescriptor?
    private(set) var consoleChild: FileDescriptor?
    private var master: FileDescriptor?

    private let state = Condition()
    private var runningOutputs = 0
    private var abandon = false

    // The host sends the opens before the request, on the same ordered stream: they are here already.
    static let acceptTimeout = 2.0

    init(channels: Cocoon_Agent_V1_StdioChannels, mux: Mux, logger: Logger) throws(GuestAgentError) {
        self.logger = logger
        terminal = channels.terminal
        func accept(_ name: String, _ field: String) throws(GuestAgentError) -> MuxChannel? {
            guard !name.isEmpty else { return nil }
            do throws(MuxError) {
                return try mux.accept(named: name, until: .after(seconds: Self.acceptTimeout))
            } catch {
                throw GuestAgentError(.failedPrecondition, "stdio.\(field): mux channel '\(name)' was not opened by the host: \(error.message)")
            }
        }
        stdin = try accept(channels.stdin, "stdin")
        stdout = try accept(channels.stdout, "stdout")
        stderr = terminal ? nil : try accept(channels.stderr, "stderr")
        if terminal, !channels.stderr.isEmpty {
            // A tty has one output stream; the host's stderr channel just ends.
            (try? mux.accept(named: channels.stderr, until: .after(seconds: Self.acceptTimeout)))?.closeWrite()
        }
        do throws(SystemError) {
            try makeDescriptors()
        } catch {
            throw GuestAgentError(.internal, "stdio: \(error.message)")
        }
    }

    private func makeDescriptors() throws(SystemError) {
        let null = { () throws(SystemError) -> FileDescriptor in try FileDescriptor.open("/dev/null", O_RDWR) }
        if terminal {
            childDescriptors = [try null(), try null(), try null()]
            var pair: [Int32] = [0, 0]
            try SystemError.check("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) }
            consoleOurs = FileDescriptor(adopting: pair[0])
            consoleChild = FileDescriptor(adopting: pair[1])
            return
        }
        if stdin != nil {
            let (r, w) = try Self.pipe()
            childDescriptors.append(r)
            stdinWriter = w
        } else {
            childDescriptors.append(try null())
        }
        for channel in [stdout, stderr] {
            if let channel {
                let (r, w) = try Self.pipe()
                // 1 MiB instead of 64 KiB: fewer wake-ups of the relay for a process that writes a lot.
                _ = cocoon_set_pipe_size(w.rawValue, 1 << 20)
                childDescriptors.append(w)
                outputReaders.append((r, channel))
            } else {
                childDescriptors.append(try null())
            }
        }
    }

    static func pipe() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [0, 0]
        try SystemError.check("pipe") { Glibc.pipe(&fds) }
        _ = cocoon_set_cloexec(fds[0])
        _ = cocoon_set_cloexec(fds[1])
        return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
    }

    /// After the spawn: the child holds its ends now. With a terminal, receive the pty master the
    /// container's init sent over the console socket. Then start copying.
    func started() throws(GuestAgentError) {
        childDescriptors.forEach { $0.close() }
        childDescriptors = []
        consoleChild?.close()
        if terminal, let consoleOurs {
            defer { consoleOurs.close() }
            let ready = (try? consoleOurs.waitReadable(until: .after(seconds: 10))) ?? false
            var name = [CChar](repeating: 0, count: 256)
            let fd = ready ? cocoon_recv_fd(consoleOurs.rawValue, &name, name.count) : -1
            guard fd >= 0 else {
                throw GuestAgentError(.internal, "the container did not send its terminal (\(ready ? String(cString: strerror(errno)) : "timed out"))")
            }
            let m = FileDescriptor(adopting: fd)
            master = m
            outputReaders = [(m, stdout)]
            stdinWriter = m
        }
        for (reader, channel) in outputReaders {
            state.withLock { runningOutputs += 1 }
            if !spawnThread({ self.copyOut(reader, to: channel) }) { state.withLock { runningOutputs -= 1 } }
        }
        if let stdin, let writer = stdinWriter {
            _ = spawnThread { self.copyIn(stdin, to: writer) }
        } else if let writer = stdinWriter, !terminal {
            writer.close()
        }
    }

    private func spawnThread(_ body: @escaping @Sendable () -> Void) -> Bool {
        do {
            try startDetachedThread(body)
            return true
        } catch {
            logger.error("stdio relay thread: \(error)")
            return false
        }
    }

    private func copyOut(_ reader: FileDescriptor, to channel: MuxChannel?) {
        defer {
            channel?.closeWrite()
            if master == nil || reader !== master { reader.close() }
            state.withLock {
                runningOutputs -= 1
                state.broadcast()
            }
        }
        while true {
            if state.withLock({ abandon }) { return }
            let bytes: [UInt8]
            do {
                guard try reader.waitReadable(until: .after(seconds: 0.1)) else { continue }
                bytes = try reader.readNow(upTo: 1 << 20)
            } catch {
                // EIO from a pty master: every slave descriptor is closed.
                return
            }
            if bytes.isEmpty { return }
            guard let channel else { continue }
            do throws(MuxError) {
                try channel.writeBytes(bytes)
            } catch {
                logger.debug("stdout/stderr channel '\(channel.name)' ended: \(error.message)")
                return
            }
        }
    }

    private func copyIn(_ channel: MuxChannel, to writer: FileDescriptor) {
        defer { if !terminal { closeStdin() } }
        while true {
            let bytes: [UInt8]
            do throws(MuxError) {
                bytes = try channel.readBytes(upTo: 64 * 1024, until: nil)
            } catch {
                return
            }
            if bytes.isEmpty { return }
            do throws(SystemError) {
                // A process that never reads its stdin must not block the relay forever.
                try writer.writeAll(bytes, until: .after(seconds: 3600))
            } catch {
                channel.close()
                return
            }
        }
    }

    /// EOF on the process's stdin (containerd's CloseIO). With a terminal, ^D.
    func closeStdin() {
        if terminal {
            if let master { var eot: UInt8 = 4; _ = write(master.rawValue, &eot, 1) }
            return
        }
        state.withLock { () -> FileDescriptor? in
            defer { stdinWriter = nil }
            return stdinWriter
        }?.close()
    }

    func resize(rows: UInt32, columns: UInt32) throws(GuestAgentError) {
        guard let master else { throw GuestAgentError(.failedPrecondition, "the process has no terminal") }
        guard rows <= UInt16.max, columns <= UInt16.max else {
            throw GuestAgentError(.invalidArgument, "rows and columns must be at most 65535")
        }
        guard cocoon_set_winsize(master.rawValue, rows, columns) == 0 else {
            throw GuestAgentError(.internal, "TIOCSWINSZ: \(String(cString: strerror(errno)))")
        }
    }

    /// After the process exited: output written before the exit reaches the host before the exit
    /// status does. Descendants that keep the pipes open get `grace` seconds, then are cut off.
    func finish(grace: Double) {
        let deadline = Deadline.after(seconds: grace)
        state.withLock {
            while runningOutputs > 0 {
                if !state.wait(until: deadline) { break }
            }
            abandon = true
        }
        state.withLock {
            while runningOutputs > 0 { _ = state.wait(until: .after(seconds: 1)) }
        }
        stdin?.close()
        master?.close()
    }
}
