// What the user reads about a generated program's verification: a one-line summary for the
// notification and the Accept/Reject lens, and a markdown page with every check and every property
// the prompt states. "verified" appears only when every check passed and every stated property was
// checked and met. No `vscode` import.
import { GenerateCheck, GenerateResult, PropertyCheck } from '../protocol';

export interface SummaryContext {
    /** The user's `deepdive.codegen.verify`. */
    verifyRequested: boolean;
    /** Workspace trust when the request was sent. */
    trusted: boolean;
}

export const UNTRUSTED_SKIP = 'verification skipped: the workspace is untrusted, so the generated code was not run';
export const VERIFY_OFF = 'verification off: deepdive.codegen.verify is off, so the program was not run';

function firstLine(s: string | null | undefined): string {
    return (s ?? '').trim().split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '') ?? '';
}

function seconds(s: number): string {
    return s < 10 ? s.toFixed(1) : s.toFixed(0);
}

function plural(n: number, word: string): string {
    const many = word.endsWith('property') ? `${word.slice(0, -1)}ies` : `${word}s`;
    return `${n} ${n === 1 ? word : many}`;
}

/** A property's label ("no_layer Dropout"), also from a daemon that sent none. */
export function propertyLabel(p: PropertyCheck): string {
    return p.label || `${p.name} ${JSON.stringify(p.expected)}`;
}

/** The properties by status. */
export function propertyCounts(result: GenerateResult): { met: number; failed: PropertyCheck[]; unchecked: PropertyCheck[]; total: number } {
    const props = result.properties ?? [];
    return {
        met: props.filter((p) => p.status === 'met').length,
        failed: props.filter((p) => p.status === 'failed'),
        unchecked: props.filter((p) => p.status === 'not_checked'),
        total: props.length,
    };
}

/** True only when the result may be called verified: every check passed, every stated property met, nothing left not understood. */
export function isVerified(result: GenerateResult): boolean {
    const { failed, unchecked } = propertyCounts(result);
    const checks = result.checks ?? [];
    return (
        result.verified &&
        result.code !== '' &&
        checks.length > 0 &&
        checks.every((c) => c.ok) &&
        failed.length === 0 &&
        unchecked.length === 0 &&
        (result.notUnderstood ?? []).length === 0
    );
}

function named(props: PropertyCheck[], limit = 3): string {
    const shown = props.slice(0, limit).map(propertyLabel).join(', ');
    return props.length > limit ? `${shown}, …` : shown;
}

/**
 * One line: "verified: 5/5 checks passed, 7/7 stated properties met in 3.2 s", "verification failed:
 * no_layer Dropout — <detail>", "checks incomplete: 1 of 4 stated properties not checked (task policy)",
 * "no program: <why>", "verification skipped: …".
 */
export function formatSummary(result: GenerateResult, ctx: SummaryContext): string {
    const checks = result.checks ?? [];
    const rounds = result.rounds ?? 0;
    const after = rounds > 0 ? ` after ${plural(rounds, 'repair round')}` : '';
    if (result.code === '') {
        return `no program: ${firstLine(result.message) || 'nothing was generated'}`;
    }
    if (ctx.verifyRequested && !ctx.trusted) {
        return UNTRUSTED_SKIP;
    }
    if (!ctx.verifyRequested) {
        return VERIFY_OFF;
    }
    const { met, failed, unchecked, total } = propertyCounts(result);
    const failedCheck = checks.find((c) => !c.ok && !(c.name === 'properties' && failed.length > 0));
    if (failedCheck) {
        const detail = firstLine(failedCheck.detail);
        return `verification failed: ${failedCheck.name}${detail ? ` — ${detail}` : ''}${after}`;
    }
    if (failed.length > 0) {
        const first = failed[0];
        const more = failed.length > 1 ? ` (and ${plural(failed.length - 1, 'more property')})` : '';
        return `verification failed: ${propertyLabel(first)} — ${firstLine(first.detail)}${more}${after}`;
    }
    if (unchecked.length > 0) {
        return `checks incomplete: ${unchecked.length} of ${plural(total, 'stated property')} not checked (${named(unchecked)})${after}`;
    }
    const notUnderstood = result.notUnderstood ?? [];
    if (notUnderstood.length > 0) {
        return `checks incomplete: not understood, so not checked: ${notUnderstood.map((w) => `"${w}"`).join(', ')}${after}`;
    }
    if (isVerified(result)) {
        const secs = result.seconds ?? checks.reduce((sum, c) => sum + (c.seconds ?? 0), 0);
        const props = total > 0 ? `, ${met}/${plural(total, 'stated property')} met` : ', no property stated';
        return `verified: ${checks.length}/${checks.length} checks passed${props} in ${seconds(secs)} s${after}`;
    }
    const why = firstLine(result.message);
    return why || (checks.length === 0 ? 'verification did not run' : 'verification did not pass');
}

/** True when the summary reports a problem (the notification is then a warning). */
export function summaryIsWarning(result: GenerateResult, ctx: SummaryContext): boolean {
    return result.code === '' || (ctx.verifyRequested && ctx.trusted && !isVerified(result));
}

function cell(s: string): string {
    return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ').trim();
}

function checkTime(c: GenerateCheck): string {
    return c.seconds == null ? '' : `${seconds(c.seconds)} s`;
}

const STATUS_MARK: Record<PropertyCheck['status'], string> = { met: '✅ met', failed: '❌ failed', not_checked: '➖ not checked' };

function propertiesSection(result: GenerateResult): string[] {
    const props = result.properties ?? [];
    const out = ['## Stated properties', ''];
    if (props.length === 0) {
        out.push('The prompt states no property the checks know of.', '');
        return out;
    }
    out.push('| | Property | Asked as | What was seen |', '|---|---|---|---|');
    for (const p of props) {
        out.push(`| ${STATUS_MARK[p.status]} | ${cell(propertyLabel(p))} | ${cell(p.text ? `"${p.text}"` : '')} | ${cell(firstLine(p.detail))} |`);
    }
    out.push('');
    return out;
}

function understandingSection(result: GenerateResult): string[] {
    const out: string[] = [];
    const notUnderstood = result.notUnderstood ?? [];
    if (notUnderstood.length > 0) {
        out.push('## Not understood', '', ...notUnderstood.map((w) => `- "${cell(w)}"`), '');
    }
    const gaps = result.gaps ?? [];
    if (gaps.length > 0) {
        out.push('## What the builtin generator cannot build as asked', '', ...gaps.map((g) => `- ${cell(g)}`), '');
    }
    if (result.understoodAs && Object.keys(result.understoodAs).length > 0) {
        out.push('## What the prompt was understood as', '', '```json', JSON.stringify(result.understoodAs, null, 2), '```', '');
    }
    if (result.intent && Object.keys(result.intent).length > 0) {
        out.push("## The builtin's reading", '', '```json', JSON.stringify(result.intent, null, 2), '```', '');
    }
    return out;
}

/** The checks page: prompt, summary, every stated property, a table of checks, failing checks' details, the reading. */
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
    out.push(...propertiesSection(result));
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
    out.push(...understandingSection(result));
    return out.join('\n');
}
