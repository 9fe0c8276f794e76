// Accumulates the daemon's GeneratePartial values: the program so far, the phase and the checks.
// No `vscode` import.
import { GenerateCheck, GeneratePartial } from '../protocol';

/** What one partial changed: the program text, the progress line, or nothing. */
export type StreamChange = 'text' | 'progress' | 'none';

export class GenerationStream {
    /** The program streamed so far (since the last reset). */
    text = '';
    /** The phase the daemon last named, if any. */
    phase: string | undefined;
    /** Checks finished in the current round (a reset starts a new round). */
    checks: GenerateCheck[] = [];
    /** Resets seen: a repair round starts over, and in frame mode the placed program replaces the streamed definitions. */
    resets = 0;
    /** Repair rounds: phases the daemon names "repairing…" (a reset alone is not one). */
    rounds = 0;

    apply(p: GeneratePartial): StreamChange {
        switch (p.kind) {
            case 'text':
                if (!p.text) {
                    return 'none';
                }
                this.text += p.text;
                return 'text';
            case 'reset':
                this.resets++;
                this.checks = [];
                if (this.text === '') {
                    return 'progress';
                }
                this.text = '';
                return 'text';
            case 'check':
                if (!p.check) {
                    return 'none';
                }
                this.checks.push(p.check);
                return 'progress';
            case 'phase':
                if (!p.text?.trim() || p.text.trim() === this.phase) {
                    return 'none';
                }
                this.phase = p.text.trim();
                if (/^repairing/i.test(this.phase)) {
                    this.rounds++;
                }
                return 'progress';
            default:
                return 'none';
        }
    }

    /** One line for the progress notification: "generating, 12 lines", "verifying, 3 checks passed", … */
    progressLabel(): string {
        let label = this.phase ?? 'generating';
        if (this.rounds > 0 && !/round/i.test(label)) {
            label += /repair/i.test(label) ? `, round ${this.rounds}` : ` (repair round ${this.rounds})`;
        }
        if (this.checks.length > 0) {
            const failed = this.checks.filter((c) => !c.ok).length;
            const passed = this.checks.length - failed;
            label += `, ${passed} check${passed === 1 ? '' : 's'} passed`;
            if (failed > 0) {
                label += `, ${failed} failed`;
            }
        } else if (/generat|writ/i.test(label) && this.text) {
            const lines = this.text.split('\n').length;
            label += `, ${lines} line${lines === 1 ? '' : 's'}`;
        }
        return label;
    }
}
