// What the Tune command and CodeLens read from a script's text: the lines that call `suggest(`, and a
// guess of the metric (the first keyword of a `run.log(` call) and of its direction. No `vscode` import.

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

const LOG_KEYWORD = /\.log\s*\(\s*([A-Za-z_]\w*)\s*=(?!=)/;

/** The first keyword of the script's first `x.log(name=...)` call, else "loss". */
export function guessMetric(text: string): string {
    const m = LOG_KEYWORD.exec(codeLines(text).join('\n'));
    return m ? m[1] : 'loss';
}

const HIGHER_IS_BETTER = /(^|_)(acc|accuracy|auc|auroc|f1|precision|recall|score|reward|return|iou|miou|dice|bleu|rouge|map|r2|top\d+|ndcg|mrr|throughput)($|_)/i;

/** "maximize" for metrics that read as higher-is-better (accuracy, f1, auc, reward, ...), else "minimize". */
export function guessDirection(metric: string): 'minimize' | 'maximize' {
    return HIGHER_IS_BETTER.test(metric) ? 'maximize' : 'minimize';
}
