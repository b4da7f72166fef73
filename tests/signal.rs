//! `demi::signal`: a signal sent to the process completes the futures waiting for
//! it, on the runtime's own loop (a handler that writes an eventfd).

#[demi::test]
async fn ctrl_c_completes_when_sigint_arrives() {
    let waiter = demi::spawn(demi::signal::ctrl_c());
    demi::yield_now().await; // the waiter registers first
    // SAFETY: raise(3) sends a signal to this process; the handler demi installed
    // only writes an eventfd.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    let r = demi::time::timeout(std::time::Duration::from_secs(5), waiter).await;
    r.expect("ctrl_c did not complete within 5 s").unwrap().unwrap();
}

#[demi::test]
async fn a_signal_sent_before_the_wait_is_not_lost_and_bad_signals_are_errors() {
    // Install the handler, then signal while nobody waits.
    let first = demi::spawn(demi::signal::signal(libc::SIGUSR2));
    demi::yield_now().await;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
    demi::time::timeout(std::time::Duration::from_secs(5), first).await.unwrap().unwrap().unwrap();
    let e = demi::signal::signal(libc::SIGKILL).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = demi::signal::signal(1000).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
