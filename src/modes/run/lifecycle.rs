//! One allocation's lifecycle, exactly as Nomad orders it:
//!
//! * prestart tasks (and prestart sidecars) start first; main tasks start once every
//!   prestart task finished successfully and every prestart sidecar runs;
//! * poststart tasks start once every main task runs;
//! * when the leader dies, a task fails for good, every main task finished, or the job is
//!   stopped, the remaining tasks are killed in Nomad's order: the leader, then the other
//!   non-sidecar tasks, then the sidecars;
//! * then the poststop tasks run (skipped only by a forced stop).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::model::Stage;
use super::task_runner::{remove, run_task, AllocContext, StopTokens, TaskUpdate};

/// How far the runner is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Running,
    /// First Ctrl-C / `stop`: Nomad's graceful order, poststop tasks run.
    Graceful,
    /// Second Ctrl-C: remove everything now.
    Force,
}

/// How an allocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocOutcome {
    /// Every task finished without failure.
    Complete,
    /// A task failed for good.
    Failed { task: String },
    /// Stopped by the user before it finished.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Pending,
    /// Started at least once and not finished for good (it may be between restarts).
    Running,
    Dead {
        failed: bool,
    },
}

struct Slot {
    name: String,
    /// When the task last started, to remove containers in reverse start order.
    started_seq: u64,
    leftover: Option<String>,
    stage: Stage,
    leader: bool,
    state: SlotState,
    ever_ran: bool,
    spawned: bool,
    kill: CancellationToken,
}

/// Why the allocation is winding down (first reason wins), for the status line.
fn announce(ctx: &AllocContext, reason: &str) {
    ctx.ui.note(format!(
        "{}: {reason}",
        ctx.alloc.name(&ctx.job, ctx.group())
    ));
}

/// Runs the allocation's tasks; `started` is told once the main and poststart tasks have
/// run (or the allocation ended before that).
pub async fn run_alloc(
    ctx: Arc<AllocContext>,
    mut shutdown: watch::Receiver<Shutdown>,
    started: mpsc::UnboundedSender<()>,
) -> AllocOutcome {
    let group = ctx.group();
    let force = CancellationToken::new();
    let mut slots: Vec<Slot> = group
        .tasks
        .iter()
        .map(|t| Slot {
            name: t.name.clone(),
            started_seq: 0,
            leftover: None,
            stage: t.stage(),
            leader: t.leader,
            state: SlotState::Pending,
            ever_ran: false,
            spawned: false,
            kill: CancellationToken::new(),
        })
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spawn = |slots: &mut Vec<Slot>, i: usize| {
        let slot = &mut slots[i];
        if slot.spawned || slot.kill.is_cancelled() {
            return;
        }
        slot.spawned = true;
        let stop = StopTokens {
            kill: slot.kill.clone(),
            force: force.clone(),
        };
        tokio::spawn(run_task(ctx.clone(), i, stop, tx.clone()));
    };

    let mut failed_task: Option<String> = None;
    let mut stopped = false;
    let mut winding_down = false;
    let mut kill_stage = 0usize;
    let mut poststop_started = false;
    let mut told_started = false;
    let mut seq = 0u64;

    for i in 0..slots.len() {
        if matches!(slots[i].stage, Stage::Prestart | Stage::PrestartSidecar) {
            spawn(&mut slots, i);
        }
    }
    loop {
        if !winding_down {
            gate(&mut slots, &spawn);
            let hooks_up = |s: &Slot| s.ever_ran || matches!(s.state, SlotState::Dead { .. });
            if !told_started
                && all(&slots, Stage::Main, |s| s.ever_ran)
                && all(&slots, Stage::Poststart, hooks_up)
                && all(&slots, Stage::PoststartSidecar, hooks_up)
            {
                told_started = true;
                let _ = started.send(());
            }
            let reason = if let Some(s) = slots
                .iter()
                .find(|s| s.state == SlotState::Dead { failed: true })
            {
                failed_task = Some(s.name.clone());
                Some(format!(
                    "task {:?} failed, stopping the other tasks",
                    s.name
                ))
            } else if let Some(s) = slots
                .iter()
                .find(|s| s.leader && matches!(s.state, SlotState::Dead { .. }))
            {
                Some(format!(
                    "leader task {:?} finished, stopping the other tasks",
                    s.name
                ))
            } else if slots.iter().any(|s| s.stage == Stage::Main)
                && all(&slots, Stage::Main, |s| {
                    matches!(s.state, SlotState::Dead { .. })
                })
            {
                Some("the main tasks finished".to_string())
            } else if *shutdown.borrow() != Shutdown::Running {
                stopped = true;
                Some(
                    "stopping in Nomad's order (leader, main tasks, sidecars, then poststop)"
                        .to_string(),
                )
            } else {
                None
            };
            if let Some(reason) = reason {
                winding_down = true;
                announce(&ctx, &reason);
            }
        }
        if winding_down {
            if *shutdown.borrow() == Shutdown::Force {
                force.cancel();
            }
            // Kill stage by stage; a stage's tasks that never started are simply dropped.
            while kill_stage < 3 {
                let in_stage = |s: &Slot| match kill_stage {
                    0 => s.leader,
                    1 => !s.leader && !s.stage.is_sidecar() && s.stage != Stage::Poststop,
                    _ => s.stage.is_sidecar(),
                };
                let mut alive = false;
                for slot in slots.iter_mut().filter(|s| in_stage(s)) {
                    slot.kill.cancel();
                    if !slot.spawned {
                        slot.state = SlotState::Dead { failed: false };
                    }
                    if slot.spawned && !matches!(slot.state, SlotState::Dead { .. }) {
                        alive = true;
                    }
                }
                if alive {
                    break;
                }
                kill_stage += 1;
            }
            if kill_stage == 3 && !poststop_started {
                poststop_started = true;
                let skip = force.is_cancelled();
                for i in 0..slots.len() {
                    if slots[i].stage == Stage::Poststop {
                        if skip {
                            slots[i].kill.cancel();
                            slots[i].state = SlotState::Dead { failed: false };
                        } else {
                            spawn(&mut slots, i);
                        }
                    }
                }
            }
            let done = slots.iter().all(|s| {
                matches!(s.state, SlotState::Dead { .. }) || (!s.spawned && s.kill.is_cancelled())
            });
            if poststop_started && done {
                break;
            }
        }
        tokio::select! {
            Some((i, update)) = rx.recv() => {
                let slot = &mut slots[i];
                match update {
                    TaskUpdate::Running => {
                        seq += 1;
                        slot.started_seq = seq;
                        slot.state = SlotState::Running;
                        slot.ever_ran = true;
                    }
                    TaskUpdate::Dead { failed, container } => {
                        slot.state = SlotState::Dead { failed };
                        slot.leftover = container;
                    }
                }
                if failed_task.is_none() {
                    if let SlotState::Dead { failed: true } = slot.state {
                        if winding_down {
                            failed_task = Some(slot.name.clone());
                        }
                    }
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The runner is gone; nothing will ask us to stop any more.
                    std::future::pending::<()>().await;
                }
                if *shutdown.borrow() != Shutdown::Running && !winding_down {
                    stopped = true;
                }
            }
        }
    }
    if !told_started {
        let _ = started.send(());
    }
    // Later containers may have joined earlier ones' namespaces (`task:NAME`): remove the
    // most recently started first.
    slots.sort_by_key(|s| std::cmp::Reverse(s.started_seq));
    for slot in &slots {
        if let Some(task_id) = &slot.leftover {
            remove(&ctx, &ctx.who(&slot.name), task_id).await;
        }
    }
    match (failed_task, stopped) {
        (Some(task), _) => AllocOutcome::Failed { task },
        (None, true) => AllocOutcome::Stopped,
        (None, false) => AllocOutcome::Complete,
    }
}

/// Starts the tasks whose lifecycle gate is open.
fn gate(slots: &mut Vec<Slot>, spawn: &impl Fn(&mut Vec<Slot>, usize)) {
    let prestart_done = all(slots, Stage::Prestart, |s| {
        s.state == SlotState::Dead { failed: false }
    }) && all(slots, Stage::PrestartSidecar, |s| {
        s.state == SlotState::Running
    });
    if !prestart_done {
        return;
    }
    for i in 0..slots.len() {
        if slots[i].stage == Stage::Main {
            spawn(slots, i);
        }
    }
    if all(slots, Stage::Main, |s| s.ever_ran) {
        for i in 0..slots.len() {
            if matches!(slots[i].stage, Stage::Poststart | Stage::PoststartSidecar) {
                spawn(slots, i);
            }
        }
    }
}

fn all(slots: &[Slot], stage: Stage, f: impl Fn(&Slot) -> bool) -> bool {
    slots.iter().filter(|s| s.stage == stage).all(f)
}
