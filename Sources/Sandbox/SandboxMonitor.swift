import AgentAPI
import SystemCalls

extension Sandbox {
    /// Why the sandbox stopped working, if it did.
    public var failure: String? { lock.withLock { failureReason } }

    /// Watches the sandbox from a thread of its own: QEMU or virtiofsd exiting, or the agent missing
    /// `allowedMisses` health checks in a row (each with `healthTimeout`), fails the sandbox. Then
    /// every call in flight ends with Unavailable naming the reason, and the VM is stopped; the
    /// caller still calls `shutdown` to clean up.
    public func startMonitor(interval: Double = 5, healthTimeout: Double = 10, allowedMisses: Int = 3) {
        do {
            try startDetachedThread { [self] in monitorLoop(interval: interval, healthTimeout: healthTimeout, allowedMisses: allowedMisses) }
        } catch {
            logger.error("cannot start the sandbox monitor: \(error)")
        }
    }

    private func monitorLoop(interval: Double, healthTimeout: Double, allowedMisses: Int) {
        var misses = 0
        while true {
            let stopping = monitorWake.withLock { () -> Bool in
                _ = monitorWake.wait(until: .after(seconds: interval))
                return isStopped
            }
            if stopping || failure != nil { return }
            if let t = vm.exited {
                fail("QEMU \(t)")
                return
            }
            if let t = virtiofsd?.exited {
                fail("virtiofsd \(t)")
                return
            }
            do throws(AgentAPIError) {
                _ = try agent.health(timeout: healthTimeout)
                misses = 0
            } catch {
                if isStopped { return }
                misses += 1
                logger.warning("agent health check failed (\(misses) of \(allowedMisses)): \(error.message)")
                if misses >= allowedMisses {
                    fail("the agent did not answer \(allowedMisses) health checks in a row (\(healthTimeout) s each)")
                    return
                }
            }
        }
    }

    /// Marks the sandbox failed and stops what still runs, so that nothing waits on a dead VM.
    func fail(_ reason: String) {
        let first = lock.withLock { () -> Bool in
            guard failureReason == nil else { return false }
            failureReason = reason
            return true
        }
        guard first else { return }
        logger.error("sandbox \(id) failed: \(reason)")
        agent.close()
        vm.stop(grace: 1)
        virtiofsd?.stop()
    }
}
