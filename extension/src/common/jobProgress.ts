// One progress notification with Cancel for every daemon job the editor starts (training, tuning, the
// deep check, compression): the daemon's own work-done progress would land in the status bar
// (vscode-languageclient shows server-initiated progress there, without its Cancel button), so the
// extension starts jobs with `progress: false` and draws this instead, from the job's events.
import { Disposable, ProgressLocation, window } from 'vscode';
import { JobEvent, JobInfo, Requests } from '../protocol';
import { errorMessage } from './interpreter';
import { traceError } from './logging';
import { progressStep } from './progressStep';
import { DeepdiveServer } from './server';

const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);

/**
 * Shows `job`'s progress in a notification with Cancel until it ends; Cancel asks the daemon to cancel
 * it. `onCancelled` gets the job as the daemon answered the cancel (for the Jobs view).
 */
export function showJobProgress(server: DeepdiveServer, job: JobInfo, title: string, onCancelled?: (job: JobInfo) => void): void {
    if (FINAL.has(job.state)) {
        return;
    }
    void window.withProgress({ location: ProgressLocation.Notification, title: `Deepdive: ${title}`, cancellable: true }, (progress, token) =>
        new Promise<void>(resolve => {
            let shown = 0;
            const subs: Disposable[] = [];
            const done = (): void => {
                for (const sub of subs) {
                    sub.dispose();
                }
                resolve();
            };
            subs.push(server.onJobEvent((e: JobEvent) => {
                if (e.jobId !== job.id) {
                    return;
                }
                if (e.type === 'progress' && e.progress) {
                    const step = progressStep(shown, e.progress.fraction, e.progress.message);
                    shown += step.increment;
                    progress.report(step);
                } else if (e.type === 'finished') {
                    done();
                }
            }));
            subs.push(server.onDidChangeStatus(s => {
                if (s.state !== 'ready') {
                    done();  // the daemon went away: its jobs with it
                }
            }));
            subs.push(token.onCancellationRequested(() => {
                progress.report({ message: 'cancelling…' });
                server.request(Requests.jobsCancel, { id: job.id }).then(j => onCancelled?.(j), (err: unknown) => {
                    traceError(`cancelling job ${job.id} failed:`, err);
                    void window.showErrorMessage(`Deepdive: cancelling "${title}" failed: ${errorMessage(err)}`);
                });
            }));
        }));
}
