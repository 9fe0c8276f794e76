// What the generated program's docstring says, read and adjusted for the file it goes into. No `vscode` import.

/** The placeholder some templates write where the program's file name goes ("python THIS_FILE --smoke"). */
export const THIS_FILE = 'THIS_FILE';

/** Lines of the docstring that are commands: only their file names are rewritten, never the prompt's words. */
const COMMAND_LINE = /\b(?:python3?|torchrun|accelerate launch)\b/;

/**
 * The leading docstring of a program: its start and end offsets in `code` (the quotes included), or
 * undefined. A shebang, comments and blank lines may come before it.
 */
export function leadingDocstring(code: string): { start: number; end: number } | undefined {
    const m = /^(?:[ \t]*(?:#[^\n]*)?\r?\n)*[ \t]*[rRuU]?("""|''')/.exec(code);
    if (!m) {
        return undefined;
    }
    const quote = m[1];
    const start = m.index + m[0].length - quote.length;
    const close = code.indexOf(quote, start + quote.length);
    return close < 0 ? undefined : { start, end: close + quote.length };
}

/** The file name as a shell word: bare when it is plain, else single-quoted. */
export function shellWord(name: string): string {
    return /^[\w.+/-]+$/.test(name) ? name : `'${name.replace(/'/g, `'\\''`)}'`;
}

function escapeRegExp(s: string): string {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The program with its docstring's run lines ("python mnist_mlp.py --smoke", "python THIS_FILE --help")
 * naming `basename`, the file it is inserted into, instead of the suggested name or the placeholder.
 * Only command lines of the leading docstring change, so a run line matches the file a user runs. A
 * name that cannot sit in a docstring as it is (a backslash, a quote run) leaves the program unchanged.
 */
export function renameRunLines(code: string, suggested: string | null | undefined, basename: string): string {
    if (!basename || /["\\]|[\r\n]/.test(basename)) {
        return code;
    }
    const doc = leadingDocstring(code);
    if (!doc) {
        return code;
    }
    const names = [THIS_FILE, ...(suggested && suggested !== basename ? [suggested] : [])];
    const token = new RegExp(`(^|[\\s(\`'"])(?:${names.map(escapeRegExp).join('|')})(?=$|[\\s)\`'",;:])`, 'g');
    const word = shellWord(basename);
    const text = code
        .slice(doc.start, doc.end)
        .split('\n')
        .map((line) => (COMMAND_LINE.test(line) && !/^\s*Prompt:/.test(line) ? line.replace(token, (_m, before: string) => before + word) : line))
        .join('\n');
    return code.slice(0, doc.start) + text + code.slice(doc.end);
}

/** A prompt as the generators write it into the docstring: one spaced line, no triple quotes or backslashes. */
export function normalizePrompt(prompt: string): string {
    return prompt.split(/\s+/).filter(Boolean).join(' ').replace(/"""/g, "'''").replace(/\\/g, '/').toLowerCase();
}

/** The `Prompt: …` line of the leading docstring (normalized), or undefined. */
export function docstringPrompt(code: string): string | undefined {
    const doc = leadingDocstring(code);
    if (!doc) {
        return undefined;
    }
    const m = /^[ \t]*Prompt:[ \t]*(.*)$/m.exec(code.slice(doc.start, doc.end));
    return m ? normalizePrompt(m[1]) : undefined;
}

/** True when a docstring's prompt line names `prompt` (also when a generator shortened it with "..."). */
export function samePrompt(written: string, prompt: string): boolean {
    const want = normalizePrompt(prompt);
    if (written === want) {
        return true;
    }
    return written.endsWith('...') && written.length > 3 && want.startsWith(written.slice(0, -3));
}
