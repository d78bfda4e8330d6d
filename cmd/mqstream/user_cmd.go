package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqstream/mqstream/auth"
)

func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage the MQTT users file (bcrypt password hashes)"}
	var file, password string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user to the users file, or change its password (the password is read from stdin unless --password is given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return errors.New("--file is required (the file auth.users_file names)")
			}
			pw, err := readPassword(cmd, password)
			if err != nil {
				return err
			}
			if err := auth.SetUser(file, args[0], pw); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "user %s saved in %s (restart the node to apply)\n", args[0], file)
			return err
		},
	}
	add.Flags().StringVarP(&file, "file", "f", "", "users file (created with mode 0600 if missing)")
	add.Flags().StringVar(&password, "password", "", "the password (default: read a line from stdin)")
	hash := &cobra.Command{
		Use:   "hash",
		Short: "Print a bcrypt hash of a password (read from stdin unless --password is given) for a users file line NAME:HASH",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd, password)
			if err != nil {
				return err
			}
			h, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
	hash.Flags().StringVar(&password, "password", "", "the password (default: read a line from stdin)")
	cmd.AddCommand(add, hash)
	return cmd
}

func readPassword(cmd *cobra.Command, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err != nil {
			return "", fmt.Errorf("no password on stdin: %w", err)
		}
		return "", errors.New("empty password")
	}
	return line, nil
}
