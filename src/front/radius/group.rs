//! Datagrams a receiving thread took together (`waiting.rs`): decided one after the other
//! after one pass of the account cache's barrier, and handed over undecided when one of
//! them must sleep. A login that sleeps on its thread (a validation server, a mail relay, a
//! failure count's commit) lends the thread's receiving role (`crate::blocking`); the
//! datagrams taken with it are no longer on the socket for the thread that takes the role,
//! so before lending, the sleeping thread leaves them here, and the next thread that
//! receives decides them first, after a barrier of its own (`tests/yubikey_remote.rs`).

use super::server::{Datagram, Shared};
use super::waiting::Taken;
use super::wire::MAX_PACKET_LEN;
use crate::metrics::phase::{self, Phase};
use std::cell::RefCell;
use std::net::UdpSocket;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Datagrams taken together and the index of the first not yet decided.
type Group = Rc<RefCell<Option<(Taken, usize)>>>;

/// Groups whose thread went to sleep before deciding all of them.
#[derive(Default)]
pub(super) struct Handed {
    groups: Mutex<Vec<(Taken, usize)>>,
    /// Whether `groups` may hold one: a receiving thread looks at this alone per datagram.
    any: AtomicBool,
}

impl Handed {
    fn put(&self, group: (Taken, usize)) {
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        g.push(group);
        self.any.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<(Taken, usize)> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let group = g.pop();
        self.any.store(!g.is_empty(), Ordering::Release);
        group
    }
}

impl Shared {
    /// Handles what one receive brought: the datagram it waited for, and those it found
    /// waiting after it (`taken`, whose buffer comes back unless it was handed over).
    pub(super) fn on_received(
        self: &Arc<Self>,
        sock: &Arc<UdpSocket>,
        first: Datagram<'_>,
        taken: &mut Taken,
    ) {
        if taken.is_empty() {
            let (data, src, received, cpu) = first;
            return self.on_datagram(sock, data, src, received, cpu);
        }
        let group: Group = Rc::new(RefCell::new(Some((std::mem::take(taken), 0))));
        self.decide_together(sock, Some(first), &group);
        let back = group.borrow_mut().take();
        if let Some((t, _)) = back {
            *taken = t;
        }
    }

    /// Decides a group another thread handed over, if there is one; `true` if it did.
    pub(super) fn decide_handed(self: &Arc<Self>, sock: &Arc<UdpSocket>) -> bool {
        let Some(handed) = self.handed.take() else {
            return false;
        };
        self.decide_together(sock, None, &Rc::new(RefCell::new(Some(handed))));
        true
    }

    /// `first`, then the group's undecided datagrams, after one barrier; what is left when
    /// a login of them must sleep goes to `handed`.
    fn decide_together(
        self: &Arc<Self>,
        sock: &Arc<UdpSocket>,
        first: Option<Datagram<'_>>,
        group: &Group,
    ) {
        self.handle.current().for_received(&mut || {
            // After the barrier: a barrier that sleeps must not hand the group on.
            self.hand_over_before_lending(group);
            if let Some((data, src, received, cpu)) = first {
                self.on_datagram(sock, data, src, received, cpu);
            }
            self.decide_rest(sock, group);
        });
        crate::blocking::before_lending(None);
    }

    /// If this thread lends its role while the group is being decided, what is left of it
    /// goes to `handed` first.
    fn hand_over_before_lending(self: &Arc<Self>, group: &Group) {
        let (shared, group) = (self.clone(), group.clone());
        crate::blocking::before_lending(Some(Box::new(move || {
            if let Some((t, next)) = group.borrow_mut().take() {
                if next < t.len() {
                    shared.handed.put((t, next));
                }
            }
        })));
    }

    fn decide_rest(self: &Arc<Self>, sock: &Arc<UdpSocket>, group: &Group) {
        // A copy of the datagram being decided: the group may be handed over meanwhile.
        let mut buf = [0u8; MAX_PACKET_LEN + 1];
        loop {
            let (n, src, received) = {
                let mut g = group.borrow_mut();
                let Some((taken, next)) = g.as_mut() else {
                    return;
                };
                let Some((data, src, received)) = taken.get(*next) else {
                    return;
                };
                *next += 1;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                (n, src, received)
            };
            // Sampled from here: its system call, and the group's barrier, are in the sample
            // of the first datagram, and what the thread did for the datagrams before it is
            // theirs.
            self.on_datagram(
                sock,
                &buf[..n],
                src,
                received,
                phase::maybe_start(Phase::Receive),
            );
        }
    }
}
