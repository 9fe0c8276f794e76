// Finds comment prompts (`# deepdive: a resnet18 for cifar-10`) in Python source. No `vscode` import.

/** One `# deepdive: …` comment: where it is and what it asks for. */
export interface CommentPrompt {
    /** 0-based line number of the comment. */
    line: number;
    /** The comment's indentation (what the generated program is inserted under it with). */
    indent: string;
    /** The prompt, trimmed; never empty. */
    prompt: string;
}

// `#`, optional spaces, `deepdive` in any case, an ASCII or full-width colon, then the prompt.
// Only whole-line comments count: a `# deepdive:` after code is a remark about that code.
const PROMPT_RE = /^([ \t]*)#[ \t]*deepdive[ \t]*[:：](.*)$/i;

/** The prompt of one line, or undefined when the line is not a (non-empty) prompt comment. */
export function parsePromptLine(text: string): { indent: string; prompt: string } | undefined {
    const m = PROMPT_RE.exec(text);
    if (!m) {
        return undefined;
    }
    const prompt = m[2].trim();
    return prompt ? { indent: m[1], prompt } : undefined;
}

/** Every prompt comment of a document's text, top to bottom. */
export function findCommentPrompts(text: string): CommentPrompt[] {
    const out: CommentPrompt[] = [];
    const lines = text.split(/\r?\n/);
    for (let line = 0; line < lines.length; line++) {
        const p = parsePromptLine(lines[line]);
        if (p) {
            out.push({ line, ...p });
        }
    }
    return out;
}
