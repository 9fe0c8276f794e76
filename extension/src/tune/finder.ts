// What the Tune command and CodeLens read from a script's text: the lines that call `suggest(`, and the
// default metric and its direction (the rules of server/tune/metric.py). No `vscode` import.

/**
 * The script's lines with string literals blanked out and comments removed (same line count, same
 * columns), so that `suggest(` in a docstring or a comment is not taken for a call.
 */
export function codeLines(text: string): string[] {
    const lines = text.split(/\r\n|\r|\n/);
    const out: string[] = [];
    let quote: string | null = null;  // the open string's delimiter: ', ", ''' or """
    for (const line of lines) {
        let code = '';
        let i = 0;
        while (i < line.length) {
            if (quote) {
                if (line[i] === '\\') {
                    code += '  ';
                    i += 2;
                    continue;
                }
                if (line.startsWith(quote, i)) {
                    code += ' '.repeat(quote.length);
                    i += quote.length;
                    quote = null;
                    continue;
                }
                code += ' ';
                i++;
                continue;
            }
            const c = line[i];
            if (c === '#') {
                break;
            }
            if (c === '"' || c === '\'') {
                quote = line.startsWith(c.repeat(3), i) ? c.repeat(3) : c;
                code += ' '.repeat(quote.length);
                i += quote.length;
                continue;
            }
            code += c;
            i++;
        }
        if (quote && quote.length === 1) {
            quote = null;  // a single-quoted string does not continue past its line (without a backslash)
        }
        out.push(code.length < line.length ? code + ' '.repeat(line.length - code.length) : code);
    }
    return out;
}

const SUGGEST_CALL = /(^|[^\w])suggest\s*\(/;
const SUGGEST_DEF = /\bdef\s+suggest\s*\(/;

/** Zero-based lines that call `suggest(` (`run.suggest(...)`, `trial.suggest(...)`, `suggest(...)`). */
export function suggestLines(text: string): number[] {
    const out: number[] = [];
    codeLines(text).forEach((code, i) => {
        if (SUGGEST_CALL.test(code) && !SUGGEST_DEF.test(code)) {
            out.push(i);
        }
    });
    return out;
}

/** The line of the first `suggest(` call, where the Tune CodeLens goes; undefined when there is none. */
export function firstSuggestLine(text: string): number | undefined {
    return suggestLines(text)[0];
}

// ---------------------------------------------------------------------------------------------------
// The default metric: the same rules as server/tune/metric.py (both checked on tests/tune/shared_cases.json)
// ---------------------------------------------------------------------------------------------------

/** Names a script logs that are never the objective. */
const BOOKKEEPING = new Set(['epoch', 'epochs', 'step', 'steps', 'iteration', 'iter', 'batch', 'batch_idx', 'lr',
    'learning_rate', 'time', 'elapsed', 'seconds', 'samples', 'tokens']);
const EVAL_PARTS = new Set(['val', 'valid', 'validation', 'eval', 'evaluation', 'test', 'dev', 'holdout', 'heldout']);
const HIGHER = new Set(['acc', 'accuracy', 'auc', 'auroc', 'f1', 'precision', 'recall', 'score', 'reward', 'return',
    'iou', 'miou', 'dice', 'bleu', 'rouge', 'map', 'r2', 'ndcg', 'mrr']);
const LOWER = new Set(['loss', 'error', 'err', 'perplexity', 'ppl', 'wer', 'cer', 'mse', 'mae', 'rmse', 'nll']);
const TOP_K = /^top\d+$/;

const parts = (name: string): string[] => name.toLowerCase().split(/[_\W]+/).filter(Boolean);
const higher = (p: string): boolean => HIGHER.has(p) || TOP_K.test(p);

/** "maximize" for a higher-is-better name (accuracy, val_acc, f1, top5...), else "minimize"; a loss part wins. */
export function guessDirection(metric: string): 'minimize' | 'maximize' {
    const ps = parts(metric);
    if (ps.some(p => LOWER.has(p) || p.endsWith('loss'))) {
        return 'minimize';
    }
    return ps.some(higher) ? 'maximize' : 'minimize';
}

/** A name that reads as a held-out evaluation rather than a training-batch figure. */
export function isEvaluation(name: string): boolean {
    return parts(name).some(p => EVAL_PARTS.has(p) || higher(p));
}

export interface MetricChoice {
    metric: string;
    direction: 'minimize' | 'maximize';
    /** Where the choice came from, one line for people (the same text the terminal prints). */
    source: string;
}

interface Logged {
    name: string;
    /** One-based. */
    line: number;
    inLoop: boolean;
}

const indentOf = (code: string): number => code.length - code.trimStart().length;

/** Whether a `for`/`while` block encloses zero-based line `i` (by indentation, up to the enclosing def/class). */
function inLoop(code: string[], i: number): boolean {
    let current = indentOf(code[i]);
    for (let j = i - 1; j >= 0 && current > 0; j--) {
        if (!code[j].trim()) {
            continue;
        }
        const indent = indentOf(code[j]);
        if (indent >= current) {
            continue;
        }
        const header = code[j].trim();
        if (/^(async\s+)?(for|while)\b/.test(header)) {
            return true;
        }
        if (/^(async\s+)?def\b|^class\b/.test(header)) {
            return false;  // a function's body runs where it is called: judged by its own loops
        }
        current = indent;
    }
    return false;
}

/** Each `<expr>.log(name=...)` keyword, in source order (strings and comments blanked first). */
function loggedNames(code: string[]): Logged[] {
    const text = code.join('\n');
    const starts: number[] = [0];
    for (let i = 0; i < text.length; i++) {
        if (text[i] === '\n') {
            starts.push(i + 1);
        }
    }
    const lineAt = (offset: number): number => {
        let lo = 0;
        let hi = starts.length - 1;
        while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (starts[mid] <= offset) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo;
    };
    const out: Logged[] = [];
    const call = /\.\s*log\s*\(/g;
    for (let m = call.exec(text); m; m = call.exec(text)) {
        const callLine = lineAt(m.index);
        const loop = inLoop(code, callLine);
        let depth = 1;
        let i = m.index + m[0].length;
        let argStart = i;
        const consider = (from: number, to: number): void => {
            const kw = /^\s*([A-Za-z_]\w*)\s*=(?!=)/.exec(text.slice(from, to));
            if (kw) {
                out.push({ name: kw[1], line: lineAt(from + kw[0].indexOf(kw[1])) + 1, inLoop: loop });
            }
        };
        for (; i < text.length && depth > 0; i++) {
            const c = text[i];
            if (c === '(' || c === '[' || c === '{') {
                depth++;
            } else if (c === ')' || c === ']' || c === '}') {
                depth--;
                if (depth === 0) {
                    consider(argStart, i);
                }
            } else if (c === ',' && depth === 1) {
                consider(argStart, i);
                argStart = i + 1;
            }
        }
    }
    return out;
}

/** `setup(keep_best="name:mode")`'s name, mode and one-based line (a string literal only). */
function keepBest(text: string, code: string[]): { name: string; mode: string | null; line: number } | null {
    const raw = text.split(/\r\n|\r|\n/);
    for (let i = 0; i < code.length; i++) {
        const m = /\bkeep_best\s*=(?!=)/.exec(code[i]);  // (the string itself is blanked in `code`)
        if (!m) {
            continue;
        }
        const literal = /^\s*(['"])([^'"\\]*)\1/.exec(raw[i].slice(m.index + m[0].length));
        if (!literal) {
            continue;
        }
        const [name, mode] = literal[2].split(':', 2).map(x => x.trim());
        if (name) {
            return { name, mode: mode || null, line: i + 1 };
        }
    }
    return null;
}

/**
 * The metric a study of this script optimises by default, in order: `setup(keep_best=...)`'s; the first
 * logged evaluation metric (val_/test_/eval prefixes, accuracy-like names); the first name logged outside
 * every loop (after training); the first logged name; else `loss`. Never the bookkeeping names.
 */
export function defaultMetric(text: string): MetricChoice {
    const code = codeLines(text);
    const best = keepBest(text, code);
    if (best) {
        const direction = best.mode === 'max' ? 'maximize' : best.mode === 'min' ? 'minimize' : guessDirection(best.name);
        const spec = best.mode ? `${best.name}:${best.mode}` : best.name;
        return { metric: best.name, direction, source: `keep_best='${spec}' in setup() at line ${best.line}` };
    }
    const logged = loggedNames(code).filter(l => !BOOKKEEPING.has(l.name));
    const names = [...new Set(logged.map(l => l.name))];
    const choice = (item: Logged, why: string): MetricChoice => {
        const others = names.filter(n => n !== item.name);
        const also = others.length ? `; it also logs ${others.join(', ')}` : '';
        return { metric: item.name, direction: guessDirection(item.name), source: `run.log(${item.name}=...) at line ${item.line}, ${why}${also}` };
    };
    const evaluation = logged.find(l => isEvaluation(l.name));
    if (evaluation) {
        return choice(evaluation, 'the first evaluation metric the script logs');
    }
    const after = logged.find(l => !l.inLoop);
    if (after) {
        return choice(after, 'logged after training');
    }
    if (logged.length) {
        return choice(logged[0], names.length === 1 ? 'the only metric the script logs' : 'the first metric the script logs');
    }
    return { metric: 'loss', direction: 'minimize', source: 'the script logs no metric by name (run.log(name=...)): loss' };
}

/** The default metric's name (see defaultMetric). */
export function guessMetric(text: string): string {
    return defaultMetric(text).metric;
}
