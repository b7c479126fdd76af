// AWS SDK for Go v1 client for the interop suite. Credentials come only from the session's
// default chain (here: the remote provider reading AWS_CONTAINER_CREDENTIALS_FULL_URI and the
// authorization token). v1 does not read AWS_ENDPOINT_URL, so the moto endpoint is passed in.
//
//	go-v1-client identity        -> {"arn": "..."}
//	go-v1-client movies TABLE    -> {"titles": [...]} after create, 3 puts, scan
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/dynamodb"
	"github.com/aws/aws-sdk-go/service/sts"
)

func main() {
	sess, err := session.NewSession(&aws.Config{
		Endpoint: aws.String(os.Getenv("AWS_ENDPOINT_URL")),
		Region:   aws.String(os.Getenv("AWS_REGION")),
		// Each provider's error, not only "NoCredentialProviders".
		CredentialsChainVerboseErrors: aws.Bool(true),
	})
	if err != nil {
		fail(err)
	}
	var result interface{}
	switch os.Args[1] {
	case "identity":
		out, err := sts.New(sess).GetCallerIdentity(&sts.GetCallerIdentityInput{})
		if err != nil {
			fail(err)
		}
		result = map[string]string{"arn": aws.StringValue(out.Arn)}
	default:
		titles, err := movies(dynamodb.New(sess), os.Args[2])
		if err != nil {
			fail(err)
		}
		result = map[string][]string{"titles": titles}
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}

func movies(db *dynamodb.DynamoDB, table string) ([]string, error) {
	_, err := db.DeleteTable(&dynamodb.DeleteTableInput{TableName: aws.String(table)})
	if aerr, ok := err.(awserr.Error); err != nil && !(ok && aerr.Code() == dynamodb.ErrCodeResourceNotFoundException) {
		return nil, err
	}
	_, err = db.CreateTable(&dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		KeySchema:            []*dynamodb.KeySchemaElement{{AttributeName: aws.String("title"), KeyType: aws.String("HASH")}},
		AttributeDefinitions: []*dynamodb.AttributeDefinition{{AttributeName: aws.String("title"), AttributeType: aws.String("S")}},
		BillingMode:          aws.String("PAY_PER_REQUEST"),
	})
	if err != nil {
		return nil, err
	}
	for _, title := range []string{"Inception", "The Matrix", "Interstellar"} {
		_, err = db.PutItem(&dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item:      map[string]*dynamodb.AttributeValue{"title": {S: aws.String(title)}},
		})
		if err != nil {
			return nil, err
		}
	}
	scan, err := db.Scan(&dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil {
		return nil, err
	}
	titles := []string{}
	for _, item := range scan.Items {
		if v, ok := item["title"]; ok && v.S != nil {
			titles = append(titles, *v.S)
		}
	}
	sort.Strings(titles)
	return titles, nil
}

func fail(err error) {
	// v1's errors span lines (one per provider and cause); the suite reads one.
	fmt.Fprintln(os.Stderr, strings.Join(strings.Fields(err.Error()), " "))
	os.Exit(1)
}
