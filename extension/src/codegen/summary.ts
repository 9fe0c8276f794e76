// What the user reads about a generated program's verification: a one-line summary for the
// notification and a markdown page with every check. No `vscode` import.
import { GenerateCheck, GenerateResult } from '../protocol';

export interface SummaryContext {
    /** The user's `deepdive.codegen.verify`. */
    verifyRequested: boolean;
    /** Workspace trust when the request was sent. */
    trusted: boolean;
}

export const UNTRUSTED_SKIP = 'verification skipped: the workspace is untrusted, so the generated code was not run';
export const VERIFY_OFF = 'not verified: deepdive.codegen.verify is off';

function firstLine(s: string | null | undefined): string {
    return (s ?? '').trim().split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? '';
}

function seconds(s: number): string {
    return s < 10 ? s.toFixed(1) : s.toFixed(0);
}

function plural(n: number, word: string): string {
    return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** "verified: 5/5 checks passed in 3.2 s", "verification failed: smoke — <detail>", "verification skipped: …". */
export function formatSummary(result: GenerateResult, ctx: SummaryContext): string {
    const checks = result.checks ?? [];
    const rounds = result.rounds ?? 0;
    const after = rounds > 0 ? ` after ${plural(rounds, 'repair round')}` : '';
    if (ctx.verifyRequested && !ctx.trusted) {
        return UNTRUSTED_SKIP;
    }
    if (!ctx.verifyRequested) {
        return VERIFY_OFF;
    }
    const failed = checks.find((c) => !c.ok);
    if (failed) {
        const detail = firstLine(failed.detail);
        return `verification failed: ${failed.name}${detail ? ` — ${detail}` : ''}${after}`;
    }
    if (result.verified && checks.length > 0) {
        const secs = result.seconds ?? checks.reduce((sum, c) => sum + (c.seconds ?? 0), 0);
        return `verified: ${checks.length}/${checks.length} checks passed in ${seconds(secs)} s${after}`;
    }
    const why = firstLine(result.message);
    if (result.verified) {
        return `verified${why ? `: ${why}` : ''}${after}`;
    }
    if (/^verification|^not verified/i.test(why)) {
        return why;
    }
    return `not verified${why ? `: ${why}` : ''}`;
}

/** True when the summary reports a problem (the notification is then a warning). */
export function summaryIsWarning(result: GenerateResult, ctx: SummaryContext): boolean {
    return ctx.verifyRequested && ctx.trusted && !result.verified;
}

function cell(s: string): string {
    return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ').trim();
}

function checkTime(c: GenerateCheck): string {
    return c.seconds == null ? '' : `${seconds(c.seconds)} s`;
}

/** The per-check page: prompt, summary, a table of checks, failing checks' details, the intent. */
export function renderChecks(prompt: string, result: GenerateResult, ctx: SummaryContext): string {
    const checks = result.checks ?? [];
    const out: string[] = ['# Deepdive: generated code', ''];
    out.push(`**Prompt:** ${cell(prompt)}`, '');
    out.push(`**Result:** ${formatSummary(result, ctx)}`, '');
    const facts = [`backend \`${result.backend}\``, `framework \`${result.framework}\``];
    if (result.rounds) {
        facts.push(plural(result.rounds, 'repair round'));
    }
    if (result.seconds != null) {
        facts.push(`${seconds(result.seconds)} s`);
    }
    if (result.filename) {
        facts.push(`suggested file \`${result.filename}\``);
    }
    out.push(facts.join(' · '), '');
    if (result.message) {
        out.push(`> ${cell(result.message)}`, '');
    }
    out.push('## Checks', '');
    if (checks.length === 0) {
        out.push('No checks ran.', '');
    } else {
        out.push('| | Check | Time | Detail |', '|---|---|---|---|');
        for (const c of checks) {
            out.push(`| ${c.ok ? '✅' : '❌'} | ${cell(c.name)} | ${checkTime(c)} | ${cell(firstLine(c.detail))} |`);
        }
        out.push('');
        for (const c of checks.filter((x) => !x.ok && (x.detail ?? '').includes('\n'))) {
            out.push(`### ${c.name}`, '', '```text', (c.detail ?? '').trimEnd().replace(/```/g, "'''"), '```', '');
        }
    }
    if (result.intent && Object.keys(result.intent).length > 0) {
        out.push('## What the prompt was understood as', '', '```json', JSON.stringify(result.intent, null, 2), '```', '');
    }
    return out.join('\n');
}
